package orchestrator

import (
	"testing"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/maintenance"
	"github.com/droverhq/drover/internal/store"
)

// The leader's retention service deletes events older than retention at
// most once per PruneInterval.
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

	retention := h.o.Maintenance().Service(maintenance.Retention)
	pruneIfDue := func() bool {
		t.Helper()
		ran, err := retention.RunDue(h.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ran
	}

	addEvent(2*time.Hour, "old-1")
	addEvent(time.Minute, "fresh")
	if !pruneIfDue() {
		t.Fatal("first prune did not run")
	}
	if got := messages(); got["old-1"] || !got["fresh"] {
		t.Fatalf("after first prune: %v, want only fresh", got)
	}

	addEvent(2*time.Hour, "old-2")
	h.clock.Advance(PruneInterval - time.Second)
	if pruneIfDue() {
		t.Fatalf("pruned again before PruneInterval")
	}
	if !messages()["old-2"] {
		t.Fatal("old-2 deleted before PruneInterval passed")
	}
	h.clock.Advance(time.Second)
	if !pruneIfDue() {
		t.Fatal("prune did not run once PruneInterval passed")
	}
	if got := messages(); got["old-2"] || !got["fresh"] {
		t.Fatalf("after second prune: %v, want only fresh", got)
	}
}
