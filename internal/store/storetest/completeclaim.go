package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

func completeClaimCases() []suiteCase {
	return []suiteCase{
		{name: "TaskCompleteClaimSeesCompletions", fn: testTaskCompleteClaimSeesCompletions},
		{name: "TaskCompleteClaimLostPerItem", fn: testTaskCompleteClaimLostPerItem},
		{name: "TaskCompleteClaimInvalidClaim", fn: testTaskCompleteClaimInvalidClaim},
	}
}

// The claims of a TaskCompleteClaim see its completions: a dependent that
// a completion released is granted by the same call, and the completion
// has every effect of TaskComplete.
func testTaskCompleteClaimSeesCompletions(t *testing.T, s store.Store) {
	a := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	b := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	first := NewTask()
	dep := NewTask(DependsOn(first.ID), Priority(10))
	InsertTasks(t, s, first, dep)
	held := Claim(t, s, a, At(time.Second), 1, 0)
	orderedIDs(t, "first claim", ids(held), []uuid.UUID{first.ID})

	now := At(time.Minute)
	lost, got, err := s.TaskCompleteClaim(t.Context(),
		[]*store.TaskCompleteParams{{Now: now, WorkerID: a.ID, Items: []store.TaskCompletion{{Lease: LeaseOf(t, held[0]), Result: json.RawMessage(`{"ok":true}`)}}}},
		[]*store.TaskClaimParams{claimParams(b, now, 1, 0), claimParams(a, now, 1, 0)})
	noErr(t, "TaskCompleteClaim", err)
	eq(t, "lost results", len(lost), 1)
	eq(t, "lost", len(lost[0]), 0)
	eq(t, "claim results", len(got), 2)
	orderedIDs(t, "b's claim", ids(got[0]), []uuid.UUID{dep.ID})
	eq(t, "a's claim", len(got[1]), 0)
	done := Get(t, s, first.ID)
	eq(t, "first state", done.State, core.TaskSucceeded)
	eq(t, "first result", string(done.Result), `{"ok":true}`)
	eq(t, "a tasks_done", GetWorker(t, s, a.ID).TasksDone, 1)
	eq(t, "dep state", Get(t, s, dep.ID).State, core.TaskRunning)
}

// A stale lease is reported for its own item only; the other completions
// and every claim go through.
func testTaskCompleteClaimLostPerItem(t *testing.T, s store.Store) {
	a := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	b := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 4)
	ha := Claim(t, s, a, At(time.Second), 1, 0)
	hb := Claim(t, s, b, At(time.Second), 1, 0)
	stale := core.Lease{TaskID: ha[0].ID, Token: uuid.New()}
	now := At(time.Minute)
	lost, got, err := s.TaskCompleteClaim(t.Context(), []*store.TaskCompleteParams{
		{Now: now, WorkerID: a.ID, Items: []store.TaskCompletion{{Lease: stale}}},
		{Now: now, WorkerID: b.ID, Items: []store.TaskCompletion{{Lease: LeaseOf(t, hb[0])}}},
	}, []*store.TaskClaimParams{claimParams(a, now, 1, 0), claimParams(b, now, 1, 0)})
	noErr(t, "TaskCompleteClaim", err)
	eq(t, "a lost", len(lost[0]), 1)
	eq(t, "a lost lease", lost[0][0], stale)
	eq(t, "b lost", len(lost[1]), 0)
	eq(t, "a claimed", len(got[0]), 1)
	eq(t, "b claimed", len(got[1]), 1)
	eq(t, "a's held task", Get(t, s, ha[0].ID).State, core.TaskRunning)
	eq(t, "b's held task", Get(t, s, hb[0].ID).State, core.TaskSucceeded)
	eq(t, "running", countState(t, s, core.TaskRunning), 3)
}

// An invalid claim fails the whole call before anything changes: the
// completions are not committed either.
func testTaskCompleteClaimInvalidClaim(t *testing.T, s store.Store) {
	a := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 2)
	held := Claim(t, s, a, At(time.Second), 1, 0)
	now := At(time.Minute)
	_, _, err := s.TaskCompleteClaim(t.Context(),
		[]*store.TaskCompleteParams{{Now: now, WorkerID: a.ID, Items: []store.TaskCompletion{{Lease: LeaseOf(t, held[0])}}}},
		[]*store.TaskClaimParams{claimParams(a, now, 0, 0)})
	if core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("TaskCompleteClaim with max 0: err = %v, want EINVALID", err)
	}
	eq(t, "held task", Get(t, s, held[0].ID).State, core.TaskRunning)
	eq(t, "queued", countState(t, s, core.TaskQueued), 1)
}
