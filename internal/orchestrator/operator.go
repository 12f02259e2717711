package orchestrator

import (
	"context"
	"fmt"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/core"
)

// Breaker actions of BreakerSet.
const (
	BreakerActionReset = "reset"
	BreakerActionOpen  = "open"
)

// BreakerSet applies an operator's `drover breaker reset|open KEY`: reset
// closes the breaker and forgets its window; open trips it at once (its
// cooldown doubling as for any re-trip) with reason. It runs between ticks
// of this orchestrator (never inside one), records a breaker.state event
// and wakes the loop. An unknown key (neither a configured placement nor a
// persisted breaker) is ENOTFOUND; an unknown action EINVALID.
func (o *Orchestrator) BreakerSet(ctx context.Context, key, action, reason string) (*core.BreakerState, error) {
	if action != BreakerActionReset && action != BreakerActionOpen {
		return nil, core.Invalid("action", "must be %s or %s (got %q)", BreakerActionReset, BreakerActionOpen, action)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.clock.Now()
	all, err := o.st.BreakerGetAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("breaker %s: load breakers: %w", action, err)
	}
	var st *core.BreakerState
	for _, b := range all {
		if b.Key == key {
			st = b
		}
	}
	pool := ""
	for name, pc := range o.cfg.Pools {
		for _, pl := range pc.Placements() {
			if pl.Key(name) == key {
				pool = name
				if st == nil {
					st = breaker.New(key, now)
				}
			}
		}
	}
	if st == nil {
		return nil, core.Errorf(core.ENOTFOUND, "no breaker with key %s (drover breaker list shows the keys)", key)
	}
	from := st.Status
	var msg string
	switch action {
	case BreakerActionReset:
		breaker.Reset(st, now)
		msg = fmt.Sprintf("breaker %s→closed for %s: reset by an operator", from, breaker.KeyLabel(key))
	case BreakerActionOpen:
		if reason == "" {
			reason = "opened by an operator"
		}
		breaker.Trip(o.bcfg, st, now, reason)
		msg = fmt.Sprintf("breaker %s→open for %s until %s: %s", from, breaker.KeyLabel(key), st.Until.UTC().Format("15:04:05"), reason)
	}
	if err := o.st.BreakerPut(ctx, st); err != nil {
		return nil, fmt.Errorf("breaker %s: save %s: %w", action, key, err)
	}
	ev := &core.Event{Time: now, Kind: core.EventBreakerState, Pool: pool, Message: msg,
		Data: mustJSON(map[string]any{"key": key, "transition": string(from) + "→" + string(st.Status), "operator": true})}
	if err := o.st.EventInsertMany(ctx, []*core.Event{ev}); err != nil {
		return nil, fmt.Errorf("breaker %s: record event: %w", action, err)
	}
	o.Wake("breaker " + action)
	return st, nil
}
