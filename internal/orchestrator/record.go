package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// blockedRepeat is how often an unchanged blocked-only tick is re-recorded.
const blockedRepeat = time.Minute

// record persists changed breakers and the tick's events in one batch.
func (o *Orchestrator) record(ctx context.Context, t *tick) error {
	for _, key := range slices.Sorted(maps.Keys(t.dirty)) {
		if err := o.st.BreakerPut(ctx, t.breakers[key]); err != nil {
			return fmt.Errorf("tick: save breaker %s: %w", key, err)
		}
	}
	blocked := strings.Join(t.rep.Blocked, "; ")
	emit := t.changed
	if !emit && blocked != "" && (blocked != o.lastBlocked || t.now.Sub(o.lastBlockedAt) >= blockedRepeat) {
		emit = true
	}
	if emit {
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(t.rep.Decisions)) {
			parts = append(parts, "pool "+name+": "+t.rep.Decisions[name].Reason)
		}
		msg := strings.Join(parts, "; ")
		if blocked != "" {
			msg += "; " + blocked
		}
		if len(t.rep.ListErrors) > 0 {
			msg += fmt.Sprintf("; provider list failed for %s: destructive reconciliation skipped", strings.Join(slices.Sorted(maps.Keys(t.rep.ListErrors)), ", "))
		}
		t.events = append(t.events, &core.Event{Time: t.now, Kind: core.EventTick, Message: msg, Data: mustJSON(map[string]any{
			"decisions": t.rep.Decisions, "blocked": t.rep.Blocked, "list_errors": t.rep.ListErrors,
			"spawned": len(t.rep.Spawned), "failed": len(t.rep.Failed), "requeued": t.rep.Requeued,
		})})
		if blocked != "" {
			o.lastBlocked, o.lastBlockedAt = blocked, t.now
		}
	}
	if blocked == "" {
		o.lastBlocked = ""
	}
	if len(t.events) == 0 {
		return nil
	}
	if err := o.st.EventInsertMany(ctx, t.events); err != nil {
		return fmt.Errorf("tick: record %d events: %w", len(t.events), err)
	}
	return nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
