package storetest

import (
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// SeedFleet inserts n ready workers, each with a heartbeat and one running
// task: the fleet the control loop reads every tick (benchmarks).
func SeedFleet(tb testing.TB, s store.Store, n int) []*core.Worker {
	tb.Helper()
	ctx := tb.Context()
	InsertN(tb, s, n)
	ws := make([]*core.Worker, 0, n)
	claims := make([]*store.TaskClaimParams, 0, n)
	beats := make([]store.WorkerHeartbeatParams, 0, n)
	for i := range n {
		w := NewWorker(core.DefaultPool, core.WorkerReady)
		w.CreatedAt = At(time.Duration(i) * time.Millisecond)
		if err := s.WorkerInsert(ctx, w); err != nil {
			tb.Fatalf("WorkerInsert: %v", err)
		}
		ws = append(ws, w)
		claims = append(claims, &store.TaskClaimParams{Now: At(24 * time.Hour), WorkerID: w.ID, Pool: w.Pool, Max: 1, LeaseDuration: time.Hour})
		beats = append(beats, store.WorkerHeartbeatParams{Now: At(24 * time.Hour), ID: w.ID})
	}
	got, err := s.TaskClaim(ctx, claims)
	if err != nil {
		tb.Fatalf("TaskClaim: %v", err)
	}
	for i, ts := range got {
		if len(ts) != 1 {
			tb.Fatalf("worker %d claimed %d tasks, want 1", i, len(ts))
		}
	}
	if err := s.WorkerHeartbeat(ctx, beats); err != nil {
		tb.Fatalf("WorkerHeartbeat: %v", err)
	}
	return ws
}

// BenchWorkerActivity times WorkerActivity against a Brief WorkerList of
// the live fleet over n seeded workers: the per-tick read of the old and
// the new control loop.
func BenchWorkerActivity(b *testing.B, s store.Store, n int) {
	SeedFleet(b, s, n)
	b.Run("ListBrief", func(b *testing.B) {
		for b.Loop() {
			ws, err := s.WorkerList(b.Context(), &store.WorkerListParams{LiveOnly: true, Brief: true})
			if err != nil || len(ws) != n {
				b.Fatalf("WorkerList: %d rows, %v", len(ws), err)
			}
		}
	})
	b.Run("Activity", func(b *testing.B) {
		for b.Loop() {
			acts, err := s.WorkerActivity(b.Context())
			if err != nil || len(acts) != n {
				b.Fatalf("WorkerActivity: %d rows, %v", len(acts), err)
			}
		}
	})
}

// testWorkerActivity checks that WorkerActivity returns exactly the live
// rows (as LiveOnly selects them) with what the queue writes to them:
// heartbeats, completions (tasks done, last task) and running leases.
func testWorkerActivity(t *testing.T, s store.Store) {
	ctx := t.Context()
	acts, err := s.WorkerActivity(ctx)
	noErr(t, "WorkerActivity(empty)", err)
	eq(t, "rows of an empty fleet", len(acts), 0)

	mk := func(st core.WorkerState, created time.Duration, terminated bool) *core.Worker {
		w := NewWorker(core.DefaultPool, st)
		w.CreatedAt, w.StateChangedAt = At(created), At(created)
		if terminated {
			w.TerminatedAt = ptrTo(At(time.Hour))
		}
		noErr(t, "WorkerInsert", s.WorkerInsert(ctx, w))
		return w
	}
	ready := mk(core.WorkerReady, 0, false)
	booting := mk(core.WorkerBooting, time.Second, false)
	requested := mk(core.WorkerRequested, 2*time.Second, false)
	terminating := mk(core.WorkerTerminating, 3*time.Second, false)
	failedLive := mk(core.WorkerFailed, 4*time.Second, false)
	mk(core.WorkerFailed, 5*time.Second, true)
	mk(core.WorkerTerminated, 6*time.Second, true)

	InsertN(t, s, 4)
	eq(t, "ready claims", len(Claim(t, s, ready, At(time.Minute), 3, 0)), 3)
	done := Claim(t, s, booting, At(time.Minute), 1, 0)
	Complete(t, s, booting, At(2*time.Minute), done...)
	noErr(t, "WorkerHeartbeat", s.WorkerHeartbeat(ctx, []store.WorkerHeartbeatParams{
		{Now: At(3 * time.Minute), ID: ready.ID}, {Now: At(4 * time.Minute), ID: booting.ID},
	}))

	acts, err = s.WorkerActivity(ctx)
	noErr(t, "WorkerActivity", err)
	full, err := s.WorkerList(ctx, &store.WorkerListParams{LiveOnly: true})
	noErr(t, "WorkerList", err)
	eq(t, "rows", len(acts), 5)
	eq(t, "rows as LiveOnly", len(acts), len(full))
	byID := map[uuid.UUID]store.WorkerActivity{}
	for _, a := range acts {
		byID[a.ID] = a
	}
	for _, w := range full {
		a, ok := byID[w.ID]
		if !ok {
			t.Fatalf("live worker %s (%s) missing from WorkerActivity", w.ID, w.State)
		}
		eq(t, "state", a.State, w.State)
		eq(t, "running", a.Running, w.Running)
		eq(t, "tasks done", a.TasksDone, w.TasksDone)
		eq(t, "heartbeat set", !a.LastHeartbeatAt.IsZero(), w.LastHeartbeatAt != nil)
		if w.LastHeartbeatAt != nil {
			timeEq(t, "heartbeat", a.LastHeartbeatAt, *w.LastHeartbeatAt)
		}
		eq(t, "last task set", !a.LastTaskAt.IsZero(), w.LastTaskAt != nil)
		if w.LastTaskAt != nil {
			timeEq(t, "last task", a.LastTaskAt, *w.LastTaskAt)
		}
	}
	for _, w := range []*core.Worker{requested, terminating, failedLive} {
		if _, ok := byID[w.ID]; !ok {
			t.Fatalf("%s worker missing from WorkerActivity", w.State)
		}
	}
	r, b := byID[ready.ID], byID[booting.ID]
	eq(t, "ready running", r.Running, 3)
	timeEq(t, "ready heartbeat", r.LastHeartbeatAt, At(3*time.Minute))
	eq(t, "ready never finished a task", r.LastTaskAt.IsZero(), true)
	eq(t, "booting running", b.Running, 0)
	eq(t, "booting tasks done", b.TasksDone, 1)
	timeEq(t, "booting last task", b.LastTaskAt, At(2*time.Minute))
	timeEq(t, "booting heartbeat", b.LastHeartbeatAt, At(4*time.Minute))
	eq(t, "requested has no heartbeat", byID[requested.ID].LastHeartbeatAt.IsZero(), true)
}
