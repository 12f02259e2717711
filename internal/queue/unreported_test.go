package queue

import (
	"context"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/google/uuid"
)

// A grant whose answer never reached the agent (the replica died between
// committing the claim and answering) is released at a heartbeat once it
// is older than the grace: back to queued, attempt and losses uncounted,
// with an event. Leases the agent reports — running, uploading or with a
// completion in flight — are never released, nor is a grant younger than
// the grace (its claim answer may still be on its way).
func TestHeartbeatReleasesUnreportedGrants(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, st store.Store) {
		const grace = 3 * time.Second
		clock := core.NewFakeClock(storetest.Base)
		s := New(st, clock, Config{UnreportedGrace: grace}, nil)
		w := storetest.InsertWorker(t, st, core.DefaultPool, core.WorkerReady)
		mustSubmit(t, s, SubmitRequest{Type: "a"}, SubmitRequest{Type: "b"}, SubmitRequest{Type: "c"})
		held := mustClaim(t, s, w.ID, 3)
		if len(held) != 3 {
			t.Fatalf("claimed %d, want 3", len(held))
		}
		// The agent received held[0] and held[1]; held[2]'s answer was lost.
		beat := func(leases ...*core.Task) {
			t.Helper()
			hb := HeartbeatInfo{Leases: []core.Lease{}}
			for _, l := range leases {
				hb.Leases = append(hb.Leases, leaseOf(l))
			}
			rep, err := s.Heartbeat(t.Context(), w.ID, hb)
			if err != nil || rep.Stop || len(rep.Lost) > 0 {
				t.Fatalf("heartbeat: %+v, %v", rep, err)
			}
		}
		state := func(tk *core.Task) *core.Task {
			t.Helper()
			got, err := s.Get(t.Context(), tk.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		clock.Advance(grace - time.Second)
		beat(held[0], held[1])
		if got := state(held[2]); got.State != core.TaskRunning {
			t.Fatalf("a grant younger than the grace was released: %s", got.State)
		}
		clock.Advance(2 * time.Second)
		beat(held[0], held[1])
		got := state(held[2])
		if got.State != core.TaskQueued || got.Attempt != 0 || got.Lost != 0 || got.Failures != 0 || got.WorkerID != nil {
			t.Fatalf("unreported grant: state %s attempt %d lost %d failures %d worker %v; want queued, nothing counted",
				got.State, got.Attempt, got.Lost, got.Failures, got.WorkerID)
		}
		evs := events(t, st, core.EventTaskRequeued)
		if len(evs) != 1 || evs[0].TaskID != held[2].ID.String() || evs[0].WorkerID != w.ID.String() {
			t.Fatalf("events %+v, want one task.requeued for %s", evs, held[2].ID)
		}
		for _, tk := range held[:2] {
			if got := state(tk); got.State != core.TaskRunning {
				t.Fatalf("reported task %s: %s, want running", tk.ID, got.State)
			}
		}
		// held[1]'s completion is acknowledged, so the agent stops
		// reporting it; held[0] (completion in flight) is still reported.
		if err := s.Complete(t.Context(), w.ID, leaseOf(held[1]), nil); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
		beat(held[0])
		if got := state(held[0]); got.State != core.TaskRunning {
			t.Fatalf("reported task: %s, want running", got.State)
		}
		if got := state(held[1]); got.State != core.TaskSucceeded {
			t.Fatalf("completed task: %s, want succeeded", got.State)
		}
		if n := len(events(t, st, core.EventTaskRequeued)); n != 1 {
			t.Fatalf("%d task.requeued events, want 1", n)
		}
	}
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		run(t, openSQLite(t))
	})
	t.Run("Postgres", func(t *testing.T) {
		t.Parallel()
		pgtest.URL(t)
		run(t, pgtest.Open(t, 4))
	})
}

// A heartbeat whose caller has given up (the agent timed out on a slow or
// paused replica) may predate the agent's latest claim: it releases
// nothing. A worker reporting all it holds is not looked at.
func TestUnreportedCandidates(t *testing.T) {
	t.Parallel()
	a, b := uuid.New(), uuid.New()
	l1, l2 := core.Lease{TaskID: uuid.New(), Token: uuid.New()}, core.Lease{TaskID: uuid.New(), Token: uuid.New()}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	live := []*hbRequest{
		{workerID: a, ctx: gone, info: HeartbeatInfo{Leases: nil}},
		{workerID: b, ctx: context.Background(), info: HeartbeatInfo{Leases: []core.Lease{l1, l2}}},
	}
	states := map[uuid.UUID]workerFacts{a: {state: core.WorkerReady, running: 2}, b: {state: core.WorkerReady, running: 2}}
	if ws, _ := unreportedCandidates(live, states, nil); len(ws) != 0 {
		t.Fatalf("candidates %v, want none (a's beat was abandoned, b reports all)", ws)
	}
	// b's l2 was just reported lost (cancelled): it no longer counts as
	// reported, and b holds 2 per the count read before: b is a candidate.
	ws, rep := unreportedCandidates(live, states, map[core.Lease]bool{l2: true})
	if len(ws) != 1 || ws[0] != b || !rep[b][l1] || rep[b][l2] {
		t.Fatalf("candidates %v reported %v, want b with l1 only", ws, rep)
	}
}
