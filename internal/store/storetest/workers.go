package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

func workerCases() []suiteCase {
	return []suiteCase{
		{name: "WorkerInsertAndGet", fn: testWorkerInsertAndGet},
		{name: "WorkerUpdate", fn: testWorkerUpdate},
		{name: "WorkerUpdateFromStatesConflict", fn: testWorkerUpdateFromStatesConflict},
		{name: "WorkerHeartbeat", fn: testWorkerHeartbeat},
		{name: "WorkerRequests", fn: testWorkerRequests},
		{name: "WorkerListFiltersAndRunning", fn: testWorkerListFiltersAndRunning},
		{name: "WorkerActivity", fn: testWorkerActivity},
	}
}

func testWorkerInsertAndGet(t *testing.T, s store.Store) {
	w := NewWorker("big", core.WorkerRequested)
	w.InstanceID = "pod-123"
	w.AgentVersion = "v1.2.3"
	w.Concurrency = 2
	mem := 1024
	w.GPUs = []core.GPU{{Index: 0, Name: "NVIDIA A100", UUID: "GPU-1", MemoryMiB: 81920, MemUsedMiB: &mem}}
	w.Metrics = json.RawMessage(`{"load":0.5}`)
	noErr(t, "WorkerInsert", s.WorkerInsert(t.Context(), w))
	got := GetWorker(t, s, w.ID)
	eq(t, "Pool", got.Pool, "big")
	eq(t, "Provider", got.Provider, "sim")
	eq(t, "Placement", got.Placement, "big/A100/eu")
	eq(t, "GPUType", got.GPUType, "A100")
	eq(t, "Region", got.Region, "eu")
	eq(t, "InstanceID", got.InstanceID, "pod-123")
	eq(t, "State", got.State, core.WorkerRequested)
	eq(t, "TokenHash", got.TokenHash, "abc123")
	eq(t, "Concurrency", got.Concurrency, 2)
	eq(t, "PricePerHour", got.PricePerHour, 1.25)
	eq(t, "AgentVersion", got.AgentVersion, "v1.2.3")
	eq(t, "len(GPUs)", len(got.GPUs), 1)
	eq(t, "GPU name", got.GPUs[0].Name, "NVIDIA A100")
	eq(t, "GPU memory", got.GPUs[0].MemoryMiB, 81920)
	if got.GPUs[0].MemUsedMiB == nil || *got.GPUs[0].MemUsedMiB != 1024 {
		t.Fatalf("GPU MemUsedMiB = %v", got.GPUs[0].MemUsedMiB)
	}
	jsonEq(t, "Metrics", got.Metrics, `{"load":0.5}`)
	timeEq(t, "CreatedAt", got.CreatedAt, Base)
	timeEq(t, "StateChangedAt", got.StateChangedAt, Base)
	if got.ReadyAt != nil || got.LastHeartbeatAt != nil || got.LastTaskAt != nil || got.TerminatedAt != nil {
		t.Fatalf("new worker has times set: %+v", got)
	}

	_, err := s.WorkerGet(t.Context(), uuid.New())
	isErr(t, "WorkerGet(unknown)", err, core.ErrNotFound)
	if err := s.WorkerInsert(t.Context(), w); err == nil {
		t.Fatalf("WorkerInsert(duplicate id) succeeded")
	}
}

func testWorkerUpdate(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerRequested)
	st := core.WorkerBooting
	inst := "pod-9"
	price := 2.5
	got, err := s.WorkerUpdate(t.Context(), &store.WorkerUpdateParams{
		Now: At(time.Minute), ID: w.ID, FromStates: []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning},
		State: &st, InstanceID: &inst, PricePerHour: &price,
	})
	noErr(t, "WorkerUpdate", err)
	eq(t, "State", got.State, core.WorkerBooting)
	eq(t, "InstanceID", got.InstanceID, "pod-9")
	eq(t, "PricePerHour", got.PricePerHour, 2.5)
	timeEq(t, "StateChangedAt", got.StateChangedAt, At(time.Minute))
	eq(t, "Placement kept", got.Placement, w.Placement)

	// Fields without a state change leave state_changed_at alone.
	ready := At(2 * time.Minute)
	reason := "booted"
	fail := core.FailGPUFault
	version := "v2"
	da, ml := 2, 1
	got, err = s.WorkerUpdate(t.Context(), &store.WorkerUpdateParams{
		Now: At(2 * time.Minute), ID: w.ID, ReadyAt: &ready, Reason: &reason, Failure: &fail,
		AgentVersion: &version, DeleteAttempts: &da, MissingLists: &ml, LastHeartbeat: &ready,
		GPUs:         []core.GPU{{Index: 0, Name: "H100", MemoryMiB: 80000}, {Index: 1, Name: "H100", MemoryMiB: 80000}},
		TerminatedAt: &ready,
	})
	noErr(t, "WorkerUpdate(fields)", err)
	stored := GetWorker(t, s, w.ID)
	for _, x := range []*core.Worker{got, stored} {
		eq(t, "State", x.State, core.WorkerBooting)
		timeEq(t, "StateChangedAt", x.StateChangedAt, At(time.Minute))
		timePtrEq(t, "ReadyAt", x.ReadyAt, ready)
		timePtrEq(t, "LastHeartbeatAt", x.LastHeartbeatAt, ready)
		timePtrEq(t, "TerminatedAt", x.TerminatedAt, ready)
		eq(t, "Reason", x.Reason, "booted")
		eq(t, "Failure", x.Failure, core.FailGPUFault)
		eq(t, "AgentVersion", x.AgentVersion, "v2")
		eq(t, "DeleteAttempts", x.DeleteAttempts, 2)
		eq(t, "MissingLists", x.MissingLists, 1)
		eq(t, "len(GPUs)", len(x.GPUs), 2)
		eq(t, "InstanceID kept", x.InstanceID, "pod-9")
	}

	_, err = s.WorkerUpdate(t.Context(), &store.WorkerUpdateParams{Now: At(3 * time.Minute), ID: uuid.New(), State: &st})
	isErr(t, "WorkerUpdate(unknown)", err, core.ErrNotFound)
}

func testWorkerUpdateFromStatesConflict(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	st := core.WorkerBooting
	reason := "should not be written"
	_, err := s.WorkerUpdate(t.Context(), &store.WorkerUpdateParams{
		Now: At(time.Minute), ID: w.ID, FromStates: []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning},
		State: &st, Reason: &reason,
	})
	isErr(t, "WorkerUpdate(wrong from-state)", err, core.ErrConflict)
	got := GetWorker(t, s, w.ID)
	eq(t, "State", got.State, core.WorkerReady)
	eq(t, "Reason", got.Reason, "")
	timeEq(t, "StateChangedAt", got.StateChangedAt, Base)

	drain := core.WorkerDraining
	got, err = s.WorkerUpdate(t.Context(), &store.WorkerUpdateParams{Now: At(time.Minute), ID: w.ID, FromStates: []core.WorkerState{core.WorkerReady}, State: &drain})
	noErr(t, "WorkerUpdate(ready→draining)", err)
	eq(t, "State", got.State, core.WorkerDraining)

	// A worker that is draining no longer claims.
	InsertTasks(t, s, NewTask())
	c, _ := ClaimOne(t.Context(), s, &store.TaskClaimParams{Now: At(2 * time.Minute), WorkerID: w.ID, Pool: w.Pool, Max: 1, LeaseDuration: time.Minute})
	eq(t, "draining worker claimed", len(c), 0)
}

func testWorkerHeartbeat(t *testing.T, s store.Store) {
	w1 := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	w2 := InsertWorker(t, s, core.DefaultPool, core.WorkerBooting)
	noErr(t, "WorkerHeartbeat", s.WorkerHeartbeat(t.Context(), []store.WorkerHeartbeatParams{{Now: At(time.Minute), ID: w1.ID, Metrics: json.RawMessage(`{"gpu_util":91}`)}}))
	got := GetWorker(t, s, w1.ID)
	timePtrEq(t, "LastHeartbeatAt", got.LastHeartbeatAt, At(time.Minute))
	jsonEq(t, "Metrics", got.Metrics, `{"gpu_util":91}`)
	eq(t, "State unchanged", got.State, core.WorkerReady)

	noErr(t, "WorkerHeartbeat(unknown skipped)", s.WorkerHeartbeat(t.Context(), []store.WorkerHeartbeatParams{{Now: At(time.Minute), ID: uuid.New()}}))

	noErr(t, "WorkerHeartbeatMany", s.WorkerHeartbeat(t.Context(), []store.WorkerHeartbeatParams{
		{Now: At(2 * time.Minute), ID: w1.ID, Metrics: json.RawMessage(`{"gpu_util":50}`)},
		{Now: At(2 * time.Minute), ID: w2.ID, Metrics: json.RawMessage(`{"gpu_util":0}`)},
	}))
	timePtrEq(t, "w1 LastHeartbeatAt", GetWorker(t, s, w1.ID).LastHeartbeatAt, At(2*time.Minute))
	jsonEq(t, "w1 Metrics", GetWorker(t, s, w1.ID).Metrics, `{"gpu_util":50}`)
	got2 := GetWorker(t, s, w2.ID)
	timePtrEq(t, "w2 LastHeartbeatAt", got2.LastHeartbeatAt, At(2*time.Minute))
	eq(t, "w2 State unchanged", got2.State, core.WorkerBooting)
	noErr(t, "WorkerHeartbeatMany(empty)", s.WorkerHeartbeat(t.Context(), nil))
}

func testWorkerListFiltersAndRunning(t *testing.T, s store.Store) {
	mk := func(pool string, st core.WorkerState, created time.Duration, mod func(*core.Worker)) *core.Worker {
		w := NewWorker(pool, st)
		w.CreatedAt, w.StateChangedAt = At(created), At(created)
		if mod != nil {
			mod(w)
		}
		noErr(t, "WorkerInsert", s.WorkerInsert(t.Context(), w))
		return w
	}
	term := At(time.Hour)
	ready := mk(core.DefaultPool, core.WorkerReady, 0, nil)
	booting := mk(core.DefaultPool, core.WorkerBooting, time.Second, nil)
	big := mk("big", core.WorkerReady, 2*time.Second, nil)
	terminating := mk(core.DefaultPool, core.WorkerTerminating, 3*time.Second, nil)
	failedLive := mk(core.DefaultPool, core.WorkerFailed, 4*time.Second, nil)
	failedGone := mk(core.DefaultPool, core.WorkerFailed, 5*time.Second, func(w *core.Worker) { w.TerminatedAt = &term })
	terminated := mk(core.DefaultPool, core.WorkerTerminated, 6*time.Second, func(w *core.Worker) { w.TerminatedAt = &term })

	InsertN(t, s, 5)
	InsertN(t, s, 1, Pool("big"))
	eq(t, "ready claims", len(Claim(t, s, ready, At(time.Minute), 3, 0)), 3)
	eq(t, "booting claims", len(Claim(t, s, booting, At(time.Minute), 1, 0)), 1)
	eq(t, "big claims", len(Claim(t, s, big, At(time.Minute), 1, 0)), 1)
	c := Claim(t, s, booting, At(time.Minute), 1, 0)
	Complete(t, s, booting, At(time.Minute), c...)

	list := func(p store.WorkerListParams) []*core.Worker {
		t.Helper()
		got, err := s.WorkerList(t.Context(), &p)
		noErr(t, "WorkerList", err)
		return got
	}
	wids := func(ws []*core.Worker) []uuid.UUID {
		out := make([]uuid.UUID, len(ws))
		for i, w := range ws {
			out[i] = w.ID
		}
		return out
	}
	all := list(store.WorkerListParams{})
	orderedIDs(t, "all oldest first", wids(all), []uuid.UUID{ready.ID, booting.ID, big.ID, terminating.ID, failedLive.ID, failedGone.ID, terminated.ID})
	running := map[uuid.UUID]int{}
	for _, w := range all {
		running[w.ID] = w.Running
	}
	eq(t, "ready Running", running[ready.ID], 3)
	eq(t, "booting Running", running[booting.ID], 1)
	eq(t, "big Running", running[big.ID], 1)
	eq(t, "terminated Running", running[terminated.ID], 0)

	orderedIDs(t, "pool big", wids(list(store.WorkerListParams{Pool: "big"})), []uuid.UUID{big.ID})
	orderedIDs(t, "states", wids(list(store.WorkerListParams{States: []core.WorkerState{core.WorkerBooting, core.WorkerTerminated}})), []uuid.UUID{booting.ID, terminated.ID})
	orderedIDs(t, "live only", wids(list(store.WorkerListParams{LiveOnly: true})), []uuid.UUID{ready.ID, booting.ID, big.ID, terminating.ID, failedLive.ID})
	orderedIDs(t, "live only default pool", wids(list(store.WorkerListParams{LiveOnly: true, Pool: core.DefaultPool})), []uuid.UUID{ready.ID, booting.ID, terminating.ID, failedLive.ID})
	orderedIDs(t, "limit", wids(list(store.WorkerListParams{Limit: 2})), []uuid.UUID{ready.ID, booting.ID})
	_ = failedGone
}

func testWorkerRequests(t *testing.T, s store.Store) {
	a, b := uuid.New(), uuid.New()
	put := func(r store.WorkerRequest) {
		t.Helper()
		noErr(t, "WorkerRequestPut", s.WorkerRequestPut(t.Context(), &r))
	}
	put(store.WorkerRequest{WorkerID: a, Action: store.WorkerActionDrain, Reason: "operator", RequestedBy: "operator", RequestedAt: At(time.Second)})
	put(store.WorkerRequest{WorkerID: b, Action: store.WorkerActionFail, Failure: core.FailGPUMissing, Reason: "no gpu", RequestedBy: "agent", RequestedAt: At(2 * time.Second)})
	got, err := s.WorkerRequestList(t.Context())
	noErr(t, "WorkerRequestList", err)
	eq(t, "requests", len(got), 2)
	eq(t, "oldest first", got[0].WorkerID, a)
	eq(t, "action", got[0].Action, store.WorkerActionDrain)
	eq(t, "failure", got[1].Failure, core.FailGPUMissing)
	eq(t, "reason", got[1].Reason, "no gpu")
	eq(t, "by", got[1].RequestedBy, "agent")
	timeEq(t, "at", got[1].RequestedAt, At(2*time.Second))

	// A later request replaces a worker's pending one; deleting what was
	// listed before keeps the replacement.
	put(store.WorkerRequest{WorkerID: a, Action: store.WorkerActionTerminate, Reason: "operator", RequestedAt: At(3 * time.Second)})
	noErr(t, "WorkerRequestDelete", s.WorkerRequestDelete(t.Context(), got))
	left, err := s.WorkerRequestList(t.Context())
	noErr(t, "WorkerRequestList", err)
	eq(t, "left", len(left), 1)
	eq(t, "replacement kept", left[0].Action, store.WorkerActionTerminate)
	noErr(t, "WorkerRequestDelete", s.WorkerRequestDelete(t.Context(), left))
	left, err = s.WorkerRequestList(t.Context())
	noErr(t, "WorkerRequestList", err)
	eq(t, "none left", len(left), 0)
}
