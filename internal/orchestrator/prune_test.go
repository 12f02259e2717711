package orchestrator

import (
	"testing"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// The leader deletes events older than retention at most once per
// PruneInterval.
func TestPruneIfDue(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *config.Config) { c.Retention = config.Duration(time.Hour) }})
	addEvent := func(age time.Duration, msg string) {
		t.Helper()
		ev := &core.Event{Time: h.clock.Now().Add(-age), Kind: core.EventTick, Message: msg}
		if err := h.raw.EventInsertMany(h.ctx, []*core.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	messages := func() map[string]bool {
		t.Helper()
		evs, err := h.raw.EventList(h.ctx, &store.EventListParams{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, e := range evs {
			out[e.Message] = true
		}
		return out
	}

	addEvent(2*time.Hour, "old-1")
	addEvent(time.Minute, "fresh")
	last := h.o.pruneIfDue(h.ctx, time.Time{})
	if got := messages(); got["old-1"] || !got["fresh"] {
		t.Fatalf("after first prune: %v, want only fresh", got)
	}
	if !last.Equal(h.clock.Now()) {
		t.Fatalf("last prune = %v, want now %v", last, h.clock.Now())
	}

	addEvent(2*time.Hour, "old-2")
	h.clock.Advance(PruneInterval - time.Second)
	if again := h.o.pruneIfDue(h.ctx, last); !again.Equal(last) {
		t.Fatalf("pruned again before PruneInterval")
	}
	if !messages()["old-2"] {
		t.Fatal("old-2 deleted before PruneInterval passed")
	}
	h.clock.Advance(time.Second)
	h.o.pruneIfDue(h.ctx, last)
	if got := messages(); got["old-2"] || !got["fresh"] {
		t.Fatalf("after second prune: %v, want only fresh", got)
	}
}
