package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

func batchCases() []suiteCase {
	return []suiteCase{
		{name: "TaskClaimBatchDisjoint", fn: testTaskClaimBatchDisjoint},
		{name: "TaskClaimBatchOwnerLimitAcrossItems", fn: testTaskClaimBatchOwnerLimitAcrossItems},
		{name: "TaskClaimBatchWorkerNotReady", fn: testTaskClaimBatchWorkerNotReady},
		{name: "TaskClaimBatchInvalidItem", fn: testTaskClaimBatchInvalidItem},
		{name: "TaskClaimBatchPools", fn: testTaskClaimBatchPools},
		{name: "TaskCompleteBatchLostPerItem", fn: testTaskCompleteBatchLostPerItem},
		{name: "WorkerListByIDs", fn: testWorkerListByIDs},
	}
}

func claimParams(w *core.Worker, now time.Time, max, ownerLimit int) *store.TaskClaimParams {
	return &store.TaskClaimParams{
		Now: now, WorkerID: w.ID, Pool: w.Pool, Max: max,
		LeaseDuration: 30 * time.Second, OwnerLimit: ownerLimit,
	}
}

// Three workers claiming in one batch get disjoint tasks, in input order
// and claim order, each task leased to the worker that got it.
func testTaskClaimBatchDisjoint(t *testing.T, s store.Store) {
	ws := []*core.Worker{
		InsertWorker(t, s, core.DefaultPool, core.WorkerReady),
		InsertWorker(t, s, core.DefaultPool, core.WorkerReady),
		InsertWorker(t, s, core.DefaultPool, core.WorkerBooting),
	}
	tasks := InsertN(t, s, 7)
	now := At(time.Hour)
	got, err := s.TaskClaim(t.Context(), []*store.TaskClaimParams{
		claimParams(ws[0], now, 2, 0), claimParams(ws[1], now, 3, 0), claimParams(ws[2], now, 5, 0),
	})
	noErr(t, "TaskClaimBatch", err)
	eq(t, "results", len(got), 3)
	eq(t, "worker 0 claimed", len(got[0]), 2)
	eq(t, "worker 1 claimed", len(got[1]), 3)
	eq(t, "worker 2 claimed", len(got[2]), 2)
	seen := map[uuid.UUID]bool{}
	i := 0
	for wi, ts := range got {
		for _, task := range ts {
			if seen[task.ID] {
				t.Fatalf("task %s granted twice", task.ID)
			}
			seen[task.ID] = true
			// Items are served in input order, each in claim order (FIFO
			// here), so the concatenation is the insertion order.
			eq(t, "claimed task", task.ID, tasks[i].ID)
			i++
			stored := Get(t, s, task.ID)
			eq(t, "State", stored.State, core.TaskRunning)
			if stored.WorkerID == nil || *stored.WorkerID != ws[wi].ID {
				t.Fatalf("task %s leased to %v, want worker %s", task.ID, stored.WorkerID, ws[wi].ID)
			}
			eq(t, "LeaseToken", *stored.LeaseToken, *task.LeaseToken)
		}
	}
	eq(t, "queued left", countState(t, s, core.TaskQueued), 0)

	// An empty batch is a no-op.
	empty, err := s.TaskClaim(t.Context(), nil)
	noErr(t, "TaskClaimBatch(nil)", err)
	eq(t, "empty batch results", len(empty), 0)
}

// The owner limit counts the tasks granted to earlier items of the batch.
func testTaskClaimBatchOwnerLimitAcrossItems(t *testing.T, s store.Store) {
	a := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	b := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	c := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 6, Owner("alice"), Priority(5))
	InsertN(t, s, 2, Owner("bob"))
	now := At(time.Minute)
	got, err := s.TaskClaim(t.Context(), []*store.TaskClaimParams{
		claimParams(a, now, 2, 3), claimParams(b, now, 2, 3), claimParams(c, now, 2, 3),
	})
	noErr(t, "TaskClaimBatch", err)
	perOwner := map[string]int{}
	for _, ts := range got {
		for _, task := range ts {
			perOwner[task.Owner]++
		}
	}
	eq(t, "alice claimed", perOwner["alice"], 3)
	eq(t, "bob claimed", perOwner["bob"], 2)
	eq(t, "first item", len(got[0]), 2)
	eq(t, "running", countState(t, s, core.TaskRunning), 5)
	// Nothing more for anyone: alice is at her limit, bob has nothing left.
	again, err := s.TaskClaim(t.Context(), []*store.TaskClaimParams{claimParams(a, now, 2, 3), claimParams(b, now, 2, 3)})
	noErr(t, "TaskClaimBatch again", err)
	eq(t, "again 0", len(again[0]), 0)
	eq(t, "again 1", len(again[1]), 0)
}

// A worker that may not claim gets nothing while the others of the batch
// are served; an unknown worker gets nothing too.
func testTaskClaimBatchWorkerNotReady(t *testing.T, s store.Store) {
	ready := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	draining := InsertWorker(t, s, core.DefaultPool, core.WorkerDraining)
	ready2 := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	unknown := NewWorker(core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 4)
	now := At(time.Minute)
	got, err := s.TaskClaim(t.Context(), []*store.TaskClaimParams{
		claimParams(ready, now, 1, 0), claimParams(draining, now, 2, 0),
		claimParams(unknown, now, 1, 0), claimParams(ready2, now, 2, 0),
	})
	noErr(t, "TaskClaimBatch", err)
	eq(t, "ready claimed", len(got[0]), 1)
	eq(t, "draining claimed", len(got[1]), 0)
	if got[1] == nil {
		t.Fatalf("draining worker's result is nil, want an empty slice")
	}
	eq(t, "unknown claimed", len(got[2]), 0)
	eq(t, "second ready claimed", len(got[3]), 2)
	eq(t, "queued left", countState(t, s, core.TaskQueued), 1)
}

// An invalid item fails the whole batch and claims nothing.
func testTaskClaimBatchInvalidItem(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 3)
	_, err := s.TaskClaim(t.Context(), []*store.TaskClaimParams{
		claimParams(w, At(time.Minute), 1, 0), claimParams(w, At(time.Minute), 0, 0),
	})
	if core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("batch with max 0: err = %v, want invalid", err)
	}
	eq(t, "queued left", countState(t, s, core.TaskQueued), 3)
}

// Several workers complete in one batch; stale leases are reported for the
// item that presented them and change nothing.
func testTaskCompleteBatchLostPerItem(t *testing.T, s store.Store) {
	a := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	b := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	c := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	parent := InsertN(t, s, 1, Priority(1))[0]
	child := InsertTasks(t, s, NewTask(DependsOn(parent.ID), Created(At(time.Hour))))[0]
	InsertN(t, s, 3)
	now := At(time.Minute)
	claimed, err := s.TaskClaim(t.Context(), []*store.TaskClaimParams{
		claimParams(a, now, 2, 0), claimParams(b, now, 1, 0), claimParams(c, now, 1, 0),
	})
	noErr(t, "TaskClaimBatch", err)
	eq(t, "a claimed", len(claimed[0]), 2)
	eq(t, "a's first task", claimed[0][0].ID, parent.ID)
	aLeases := []core.Lease{LeaseOf(t, claimed[0][0]), LeaseOf(t, claimed[0][1])}
	bLease := LeaseOf(t, claimed[1][0])
	cLease := LeaseOf(t, claimed[2][0])
	staleToken := core.Lease{TaskID: bLease.TaskID, Token: uuid.New()}
	done := At(2 * time.Minute)
	lost, err := s.TaskComplete(t.Context(), []*store.TaskCompleteParams{
		{Now: done, WorkerID: a.ID, Items: []store.TaskCompletion{
			{Lease: aLeases[0], Result: json.RawMessage(`{"ok":1}`)}, {Lease: aLeases[1]},
		}},
		// b presents a stale token for its own task.
		{Now: done, WorkerID: b.ID, Items: []store.TaskCompletion{{Lease: staleToken}}},
		// c presents b's lease (held by another worker: stale for c) and
		// its own.
		{Now: done, WorkerID: c.ID, Items: []store.TaskCompletion{{Lease: bLease}, {Lease: cLease}}},
		{Now: done, WorkerID: b.ID},
	})
	noErr(t, "TaskCompleteBatch", err)
	eq(t, "results", len(lost), 4)
	eq(t, "a lost", len(lost[0]), 0)
	eq(t, "b lost", len(lost[1]), 1)
	eq(t, "b's lost lease", lost[1][0], staleToken)
	eq(t, "c lost", len(lost[2]), 1)
	eq(t, "c's lost lease", lost[2][0], bLease)
	if lost[3] == nil {
		t.Fatalf("empty item's lost is nil, want an empty slice")
	}

	for _, l := range aLeases {
		eq(t, "a's task state", Get(t, s, l.TaskID).State, core.TaskSucceeded)
	}
	jsonEq(t, "Result", Get(t, s, parent.ID).Result, `{"ok":1}`)
	eq(t, "c's task state", Get(t, s, cLease.TaskID).State, core.TaskSucceeded)
	// b's task is untouched by both stale presentations.
	bt := Get(t, s, bLease.TaskID)
	eq(t, "b's task state", bt.State, core.TaskRunning)
	eq(t, "b's task token", *bt.LeaseToken, bLease.Token)
	// The child of a's first task is released.
	eq(t, "child deps_pending", Get(t, s, child.ID).DepsPending, 0)
	eq(t, "a tasks_done", GetWorker(t, s, a.ID).TasksDone, 2)
	eq(t, "b tasks_done", GetWorker(t, s, b.ID).TasksDone, 0)
	eq(t, "c tasks_done", GetWorker(t, s, c.ID).TasksDone, 1)
}

// WorkerList with IDs returns only those workers, with their running
// counts; the other filters still apply.
func testWorkerListByIDs(t *testing.T, s store.Store) {
	a := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	b := InsertWorker(t, s, "other", core.WorkerReady)
	InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	gone := InsertWorker(t, s, core.DefaultPool, core.WorkerTerminated)
	InsertN(t, s, 2)
	Claim(t, s, a, At(time.Minute), 2, 0)
	got, err := s.WorkerList(t.Context(), &store.WorkerListParams{IDs: []uuid.UUID{a.ID, b.ID, gone.ID, uuid.New()}})
	noErr(t, "WorkerList", err)
	eq(t, "listed", len(got), 3)
	byID := map[uuid.UUID]*core.Worker{}
	for _, w := range got {
		byID[w.ID] = w
	}
	if byID[a.ID] == nil || byID[b.ID] == nil || byID[gone.ID] == nil {
		t.Fatalf("WorkerList by ids = %v, want a, b and the terminated worker", got)
	}
	eq(t, "a running", byID[a.ID].Running, 2)
	eq(t, "b running", byID[b.ID].Running, 0)
	live, err := s.WorkerList(t.Context(), &store.WorkerListParams{IDs: []uuid.UUID{a.ID, gone.ID}, LiveOnly: true, Pool: core.DefaultPool})
	noErr(t, "WorkerList live", err)
	eq(t, "live listed", len(live), 1)
	eq(t, "live worker", live[0].ID, a.ID)
}

// A batch may mix pools: each item claims from its worker's pool only, and
// an item that empties one pool does not stop later items of another.
func testTaskClaimBatchPools(t *testing.T, s store.Store) {
	a1 := InsertWorker(t, s, "a", core.WorkerReady)
	b1 := InsertWorker(t, s, "b", core.WorkerReady)
	a2 := InsertWorker(t, s, "a", core.WorkerReady)
	b2 := InsertWorker(t, s, "b", core.WorkerReady)
	InsertN(t, s, 1, Pool("a"))
	InsertN(t, s, 3, Pool("b"))
	now := At(time.Minute)
	got, err := s.TaskClaim(t.Context(), []*store.TaskClaimParams{
		claimParams(a1, now, 2, 0), claimParams(b1, now, 1, 0), claimParams(a2, now, 1, 0), claimParams(b2, now, 5, 0),
	})
	noErr(t, "TaskClaimBatch", err)
	eq(t, "a1 claimed", len(got[0]), 1)
	eq(t, "b1 claimed", len(got[1]), 1)
	eq(t, "a2 claimed", len(got[2]), 0)
	eq(t, "b2 claimed", len(got[3]), 2)
	for i, want := range []string{"a", "b", "", "b"} {
		for _, task := range got[i] {
			eq(t, "pool", task.Pool, want)
		}
	}
	eq(t, "queued left", countState(t, s, core.TaskQueued), 0)
}
