package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

func maintenanceCases() []suiteCase {
	return []suiteCase{
		{name: "WorkerPrune", fn: testWorkerPrune},
		{name: "HousekeepingFenced", fn: testHousekeepingFenced},
		{name: "Analyze", fn: testAnalyze},
	}
}

// testWorkerPrune: only terminated rows older than the horizon go.
func testWorkerPrune(t *testing.T, s store.Store) {
	ctx := t.Context()
	insert := func(state core.WorkerState, changed time.Duration) *core.Worker {
		t.Helper()
		w := NewWorker(core.DefaultPool, state)
		w.StateChangedAt = At(changed)
		noErr(t, "WorkerInsert", s.WorkerInsert(ctx, w))
		return w
	}
	old := insert(core.WorkerTerminated, 0)
	young := insert(core.WorkerTerminated, 2*time.Hour)
	failed := insert(core.WorkerFailed, 0)
	terminating := insert(core.WorkerTerminating, 0)
	ready := insert(core.WorkerReady, 0)

	n, err := s.WorkerPrune(ctx, At(time.Hour))
	noErr(t, "WorkerPrune", err)
	eq(t, "rows deleted", n, 1)
	_, err = s.WorkerGet(ctx, old.ID)
	isErr(t, "WorkerGet(pruned)", err, core.ErrNotFound)
	for _, w := range []*core.Worker{young, failed, terminating, ready} {
		got, err := s.WorkerGet(ctx, w.ID)
		noErr(t, "WorkerGet(kept "+string(w.State)+")", err)
		eq(t, "kept state", got.State, w.State)
	}
	n, err = s.WorkerPrune(ctx, At(time.Hour))
	noErr(t, "WorkerPrune again", err)
	eq(t, "rows deleted again", n, 0)
}

// testHousekeepingFenced: Prune and WorkerPrune made under the fence of a
// term that is over delete nothing.
func testHousekeepingFenced(t *testing.T, s store.Store) {
	ctx := t.Context()
	elect := func(id string, now time.Time) {
		t.Helper()
		ok, err := s.LeaderAttemptElect(ctx, &store.LeaderElectParams{Now: now, LeaderID: id, TTL: 15 * time.Second})
		noErr(t, "LeaderAttemptElect", err)
		eq(t, id+" elected", ok, true)
	}
	elect("a", At(0))
	lr, ok := s.(store.LeaderReader)
	if !ok {
		t.Fatalf("%s store does not implement store.LeaderReader", s.Backend())
	}
	l, err := lr.LeaderGet(ctx)
	noErr(t, "LeaderGet", err)
	stale := store.WithFence(ctx, store.Fence{LeaderID: "a", Term: l.Term})
	elect("b", At(time.Minute))

	w := NewWorker(core.DefaultPool, core.WorkerTerminated)
	noErr(t, "WorkerInsert", s.WorkerInsert(ctx, w))
	noErr(t, "EventInsertMany", s.EventInsertMany(ctx, []*core.Event{{Time: At(0), Kind: core.EventTick, Message: "old"}}))

	if _, err := s.WorkerPrune(stale, At(time.Hour)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("WorkerPrune under a's old term: err = %v, want ErrFenced", err)
	}
	if _, err := s.Prune(stale, At(time.Hour)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("Prune under a's old term: err = %v, want ErrFenced", err)
	}
	kept := func() {
		t.Helper()
		if _, err := s.WorkerGet(ctx, w.ID); err != nil {
			t.Fatalf("terminated row deleted by a fenced prune: %v", err)
		}
	}
	kept()
	evs, err := s.EventList(ctx, &store.EventListParams{})
	noErr(t, "EventList", err)
	eq(t, "events kept", len(evs), 1)

	// Under the current term both delete.
	l, err = lr.LeaderGet(ctx)
	noErr(t, "LeaderGet", err)
	cur := store.WithFence(ctx, store.Fence{LeaderID: "b", Term: l.Term})
	n, err := s.WorkerPrune(cur, At(time.Hour))
	noErr(t, "WorkerPrune under b's term", err)
	eq(t, "workers deleted", n, 1)
	n, err = s.Prune(cur, At(time.Hour))
	noErr(t, "Prune under b's term", err)
	eq(t, "rows deleted", n, 1)
}

// testAnalyze: refreshing statistics succeeds on a store with rows.
func testAnalyze(t *testing.T, s store.Store) {
	InsertN(t, s, 3)
	InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	noErr(t, "Analyze", s.Analyze(t.Context()))
}
