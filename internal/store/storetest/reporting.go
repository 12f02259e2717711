package storetest

import (
	"math"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

func reportingCases() []suiteCase {
	return []suiteCase{
		{name: "SamplesInsertListPrune", fn: testSamples},
		{name: "TaskFinishedCount", rule: testTaskFinishedCount},
		{name: "WorkerSpend", fn: testWorkerSpend},
		{name: "TaskOldestReadyAndRunningByOwner", fn: testTaskOldestReadyAndRunningByOwner},
		{name: "EventListAfterID", fn: testEventListAfterID},
		{name: "WorkerGroupsAndAttention", fn: testWorkerGroupsAndAttention},
	}
}

func testSamples(t *testing.T, s store.Store) {
	ctx := t.Context()
	var in []*store.Sample
	for i := range 3 {
		at := At(time.Duration(i) * time.Minute)
		in = append(in,
			&store.Sample{Time: at, Pool: store.SampleFleetPool, Queued: 10 + i, Claimable: 5, Running: 2, Ready: 2, Booting: 1, Succeeded: 7, TasksFailed: 1, SpendPerHour: 2.5},
			&store.Sample{Time: at, Pool: "gpu", Queued: 10 + i, Claimable: 5, Running: 2, Ready: 2, Booting: 1, SpendPerHour: 2.5})
	}
	noErr(t, "SampleInsertMany", s.SampleInsertMany(ctx, in))
	// The same (time, pool) replaces the row.
	noErr(t, "SampleInsertMany(replace)", s.SampleInsertMany(ctx, []*store.Sample{{Time: At(0), Pool: "gpu", Queued: 99}}))

	all, err := s.SampleList(ctx, &store.SampleListParams{Since: At(0), Until: At(time.Hour)})
	noErr(t, "SampleList", err)
	eq(t, "samples", len(all), 6)
	eq(t, "first pool (ordered by time, pool)", all[0].Pool, store.SampleFleetPool)
	eq(t, "replaced row", all[1].Queued, 99)
	eq(t, "time", all[2].Time, At(time.Minute))
	got := *all[2]
	want := *in[2]
	eq(t, "sample round trip", got, want)

	one, err := s.SampleList(ctx, &store.SampleListParams{Since: At(time.Minute), Until: At(time.Minute), Pool: "gpu"})
	noErr(t, "SampleList(pool, one time)", err)
	eq(t, "samples of gpu at 1m", len(one), 1)
	_, err = s.SampleList(ctx, &store.SampleListParams{Limit: store.MaxSampleListLimit + 1})
	eq(t, "SampleList(limit too large)", core.ErrorCode(err), core.EINVALID)

	n, err := s.SamplePrune(ctx, At(2*time.Minute))
	noErr(t, "SamplePrune", err)
	eq(t, "pruned", n, 4)
	left, err := s.SampleList(ctx, &store.SampleListParams{})
	noErr(t, "SampleList(all)", err)
	eq(t, "left", len(left), 2)
}

func testTaskFinishedCount(t *testing.T, s store.Store, r Rules) {
	ctx := t.Context()
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 4, MaxAttempts(1))
	c := Claim(t, s, w, At(time.Minute), 4, 0)
	Complete(t, s, w, At(10*time.Minute), c[0])
	Complete(t, s, w, At(30*time.Minute), c[1])
	_, err := r.TaskFail(ctx, s, &TaskFailParams{Now: At(20 * time.Minute), WorkerID: w.ID, Lease: LeaseOf(t, c[2]), Error: "boom"})
	noErr(t, "TaskFail", err)

	ok, failed, err := s.TaskFinishedCount(ctx, At(10*time.Minute), At(30*time.Minute))
	noErr(t, "TaskFinishedCount", err)
	eq(t, "succeeded in (10m, 30m]", ok, 1)
	eq(t, "failed in (10m, 30m]", failed, 1)
	ok, failed, err = s.TaskFinishedCount(ctx, At(0), At(time.Hour))
	noErr(t, "TaskFinishedCount", err)
	eq(t, "succeeded", ok, 2)
	eq(t, "failed", failed, 1)
}

func testWorkerSpend(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Live since Base at $2/h; terminated after 30 min at $1/h; another
	// pool entirely before the window; a free worker.
	live := NewWorker("gpu", core.WorkerReady)
	live.PricePerHour = 2
	gone := NewWorker("gpu", core.WorkerReady)
	gone.PricePerHour = 1
	old := NewWorker("cpu", core.WorkerReady)
	old.PricePerHour = 5
	free := NewWorker("cpu", core.WorkerReady)
	free.PricePerHour = 0
	for _, w := range []*core.Worker{live, gone, old, free} {
		noErr(t, "WorkerInsert", s.WorkerInsert(ctx, w))
	}
	end := At(30 * time.Minute)
	_, err := s.WorkerUpdate(ctx, &store.WorkerUpdateParams{Now: end, ID: gone.ID, State: ptrTo(core.WorkerTerminated), TerminatedAt: &end})
	noErr(t, "WorkerUpdate(gone)", err)
	oldEnd := At(10 * time.Minute)
	_, err = s.WorkerUpdate(ctx, &store.WorkerUpdateParams{Now: oldEnd, ID: old.ID, State: ptrTo(core.WorkerTerminated), TerminatedAt: &oldEnd})
	noErr(t, "WorkerUpdate(old)", err)

	spend, err := s.WorkerSpend(ctx, At(15*time.Minute), At(75*time.Minute))
	noErr(t, "WorkerSpend", err)
	// live: 1 h × $2; gone: 15 min × $1.
	if math.Abs(spend["gpu"]-2.25) > 1e-6 || len(spend) != 1 {
		t.Fatalf("spend = %v, want map[gpu:2.25]", spend)
	}
}

func testTaskOldestReadyAndRunningByOwner(t *testing.T, s store.Store) {
	ctx := t.Context()
	none, err := s.TaskOldestReady(ctx, At(time.Hour))
	noErr(t, "TaskOldestReady(empty)", err)
	if none != nil {
		t.Fatalf("TaskOldestReady(empty) = %v, want nil", none)
	}
	parent := NewTask(Created(At(0)), Owner("alice"))
	child := NewTask(Created(At(time.Second)), DependsOn(parent.ID))
	later := NewTask(Created(At(2 * time.Second)))
	future := NewTask(Created(At(3*time.Second)), func(t *core.Task) { t.RunAfter = At(time.Hour) })
	InsertTasks(t, s, parent, child, later, future)
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	c := Claim(t, s, w, At(time.Minute), 1, 0)
	eq(t, "claimed", c[0].ID, parent.ID)

	oldest, err := s.TaskOldestReady(ctx, At(time.Minute))
	noErr(t, "TaskOldestReady", err)
	if oldest == nil || !oldest.Equal(At(2*time.Second)) {
		t.Fatalf("TaskOldestReady = %v, want %v (the dependent and the backed-off task are not ready)", oldest, At(2*time.Second))
	}
	by, err := s.TaskRunningByOwner(ctx, 1)
	noErr(t, "TaskRunningByOwner", err)
	eq(t, "owners at 1", len(by), 1)
	eq(t, "alice running", by["alice"], 1)
	by, err = s.TaskRunningByOwner(ctx, 2)
	noErr(t, "TaskRunningByOwner(2)", err)
	eq(t, "owners at 2", len(by), 0)
}

func ptrTo[T any](v T) *T { return &v }

func testEventListAfterID(t *testing.T, s store.Store) {
	ctx := t.Context()
	var evs []*core.Event
	for i := range 5 {
		evs = append(evs, &core.Event{Time: At(time.Duration(i) * time.Second), Kind: core.EventTick, Pool: "gpu", TaskID: "t1", Message: "e"})
	}
	noErr(t, "EventInsertMany", s.EventInsertMany(ctx, evs))
	all, err := s.EventList(ctx, &store.EventListParams{})
	noErr(t, "EventList", err)
	eq(t, "events", len(all), 5)
	first := all[4].ID // newest first
	got, err := s.EventList(ctx, &store.EventListParams{AfterID: first, Limit: 2, TaskID: "t1"})
	noErr(t, "EventList(after)", err)
	eq(t, "page", len(got), 2)
	eq(t, "oldest first", got[0].ID < got[1].ID, true)
	eq(t, "after the cursor", got[0].ID, all[3].ID)
	rest, err := s.EventList(ctx, &store.EventListParams{AfterID: got[1].ID})
	noErr(t, "EventList(after, rest)", err)
	eq(t, "rest", len(rest), 2)
	eq(t, "last", rest[1].ID, all[0].ID)
}
