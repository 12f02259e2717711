package simagent

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	psim "github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/google/uuid"
)

// start is the tests' fake-clock origin; pl their placement.
var (
	start = time.Date(2025, 10, 15, 12, 0, 0, 0, time.UTC)
	pl    = provider.Placement{GPU: "RTX4090", Region: "EU-RO-1", Cloud: "SECURE"}
)

// fleetBundle is a real queue on a temp-file SQLite store, a sim provider
// and a fleet, all on one fake clock.
type fleetBundle struct {
	ctx   context.Context
	clock *core.FakeClock
	st    store.Store
	q     *queue.Service
	p     *psim.Provider
	fleet *Fleet
}

func setupFleet(t *testing.T, def psim.Script, opts FleetOptions) *fleetBundle {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "drover.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	clock := core.NewFakeClock(start)
	q := queue.New(st, clock, queue.Config{LeaseDuration: 25 * time.Second, OwnerLimit: 0}, nil)
	p := psim.New(clock, psim.Options{Seed: 7, Default: def})
	return &fleetBundle{ctx: ctx, clock: clock, st: st, q: q, p: p, fleet: NewFleet(p, q, opts)}
}

// spawn inserts a worker row and creates its instance, as the orchestrator
// does (row first, then the provider call).
func (b *fleetBundle) spawn(t *testing.T, concurrency int) (uuid.UUID, string) {
	t.Helper()
	now := b.clock.Now()
	w := &core.Worker{ID: uuid.New(), Pool: "default", Provider: "sim", Placement: pl.Key("default"),
		State: core.WorkerProvisioning, Concurrency: concurrency, TokenHash: "x", CreatedAt: now, StateChangedAt: now}
	if err := b.st.WorkerInsert(b.ctx, w); err != nil {
		t.Fatalf("insert worker: %v", err)
	}
	inst, err := b.p.Create(b.ctx, &provider.CreateRequest{WorkerID: w.ID.String(), Pool: "default", Placement: pl})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return w.ID, inst.ID
}

func (b *fleetBundle) submit(t *testing.T, params ...string) []uuid.UUID {
	t.Helper()
	var reqs []queue.SubmitRequest
	for _, p := range params {
		reqs = append(reqs, queue.SubmitRequest{Type: "render", Params: json.RawMessage(p)})
	}
	res, err := b.q.Submit(b.ctx, reqs)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	ids := make([]uuid.UUID, len(res))
	for i, r := range res {
		ids[i] = r.Task.ID
	}
	return ids
}

// run advances the clock in steps of 1s for d, stepping the fleet, and
// promotes registered workers to ready like the orchestrator would.
func (b *fleetBundle) run(t *testing.T, d time.Duration) { b.runStep(t, d, time.Second) }

// runStep is run with a coarser step.
func (b *fleetBundle) runStep(t *testing.T, d, step time.Duration) {
	t.Helper()
	for end := b.clock.Now().Add(d); b.clock.Now().Before(end); {
		b.clock.Advance(step)
		if err := b.fleet.Step(b.ctx); err != nil {
			t.Fatalf("step: %v", err)
		}
		b.promote(t)
	}
}

func (b *fleetBundle) promote(t *testing.T) {
	t.Helper()
	ws, err := b.st.WorkerList(b.ctx, &store.WorkerListParams{})
	if err != nil {
		t.Fatalf("list workers: %v", err)
	}
	for _, w := range ws {
		if (w.State == core.WorkerProvisioning || w.State == core.WorkerBooting) && w.LastHeartbeatAt != nil {
			ready, now := core.WorkerReady, b.clock.Now()
			if _, err := b.st.WorkerUpdate(b.ctx, &store.WorkerUpdateParams{Now: now, ID: w.ID, State: &ready, ReadyAt: &now,
				FromStates: []core.WorkerState{w.State}}); err != nil {
				t.Fatalf("promote: %v", err)
			}
		}
	}
}

func (b *fleetBundle) setState(t *testing.T, id uuid.UUID, s core.WorkerState) {
	t.Helper()
	if _, err := b.st.WorkerUpdate(b.ctx, &store.WorkerUpdateParams{Now: b.clock.Now(), ID: id, State: &s}); err != nil {
		t.Fatalf("set state: %v", err)
	}
}

func (b *fleetBundle) task(t *testing.T, id uuid.UUID) *core.Task {
	t.Helper()
	tk, err := b.q.Get(b.ctx, id)
	if err != nil {
		t.Fatalf("get task: %v", err)
	}
	return tk
}

func (b *fleetBundle) agent(t *testing.T, instanceID string) AgentInfo {
	t.Helper()
	a, ok := b.fleet.Agent(instanceID)
	if !ok {
		t.Fatalf("no agent on %s", instanceID)
	}
	return a
}

func TestFleetRunsTasks(t *testing.T) {
	b := setupFleet(t, psim.Script{ProvisionTime: time.Minute, BootTime: 2 * time.Minute}, FleetOptions{})
	wid, iid := b.spawn(t, 2)
	tasks := b.submit(t, `{"sim_duration":"30s"}`, `{"sim_duration":"30s"}`, `{"sim_duration":"30s"}`)

	b.runStep(t, 2*time.Minute+50*time.Second, 5*time.Second)
	b.run(t, 8*time.Second)
	if a, ok := b.fleet.Agent(iid); ok && a.Registered {
		t.Fatalf("agent registered before provision+boot (3m): %+v", a)
	}
	b.run(t, 3*time.Second) // registers at 3m, promoted to ready, claims at 3m01
	a := b.agent(t, iid)
	if !a.Registered || a.WorkerID != wid || a.Running != 2 {
		t.Fatalf("at 3m01: %+v, want registered with 2 tasks running (concurrency 2)", a)
	}
	w, err := b.st.WorkerGet(b.ctx, wid)
	if err != nil || w.AgentVersion != "sim" || w.InstanceID != iid || len(w.GPUs) != 1 {
		t.Fatalf("registration facts: %+v %v", w, err)
	}

	b.run(t, 2*time.Minute)
	for _, id := range tasks {
		if tk := b.task(t, id); tk.State != core.TaskSucceeded {
			t.Fatalf("task %s is %s, want succeeded", id, tk.State)
		}
	}
	a = b.agent(t, iid)
	if a.Done != 3 || a.Running != 0 || a.Stopped {
		t.Fatalf("after 5m: %+v", a)
	}
	// 2 minutes at a 5s interval: about 24 heartbeats.
	if a.Heartbeats < 20 || a.Heartbeats > 25 {
		t.Fatalf("heartbeats = %d in 2m at 5s", a.Heartbeats)
	}
	if w, _ := b.st.WorkerGet(b.ctx, wid); w.LastHeartbeatAt == nil || b.clock.Now().Sub(*w.LastHeartbeatAt) > 5*time.Second {
		t.Fatalf("heartbeat not recorded: %+v", w.LastHeartbeatAt)
	}
}

func TestFleetPoisonTaskKillsAgent(t *testing.T) {
	b := setupFleet(t, psim.Script{}, FleetOptions{})
	wid, iid := b.spawn(t, 1)
	poison := b.submit(t, `{"sim_duration":"2s","sim_outcome":"kill"}`)[0]

	b.run(t, 5*time.Second)
	a := b.agent(t, iid)
	if !a.Stopped || a.StopReason == "" {
		t.Fatalf("agent survived a poison task: %+v", a)
	}
	w, _ := b.st.WorkerGet(b.ctx, wid)
	lastBeat := *w.LastHeartbeatAt
	b.run(t, time.Minute)
	w, _ = b.st.WorkerGet(b.ctx, wid)
	if !w.LastHeartbeatAt.Equal(lastBeat) {
		t.Fatalf("dead agent kept heartbeating: %v → %v", lastBeat, w.LastHeartbeatAt)
	}
	// The instance is still there (the orchestrator must notice the lost
	// heartbeat), and the task is still held until its lease expires.
	if list, _ := b.p.List(b.ctx); len(list) != 1 {
		t.Fatalf("instance of a killed agent should keep running: %+v", list)
	}
	if tk := b.task(t, poison); tk.State != core.TaskRunning {
		t.Fatalf("poison task %s, want running until the lease is lost", tk.State)
	}
}

func TestFleetDrainStopAndLost(t *testing.T) {
	b := setupFleet(t, psim.Script{}, FleetOptions{})
	w1, i1 := b.spawn(t, 1)
	w2, i2 := b.spawn(t, 1)
	ids := b.submit(t, `{"sim_duration":"1m"}`, `{"sim_duration":"1m"}`, `{"sim_duration":"1m"}`)

	b.run(t, 10*time.Second)
	if b.agent(t, i1).Running != 1 || b.agent(t, i2).Running != 1 {
		t.Fatalf("both agents should run one task: %+v", b.fleet.Agents())
	}
	b.setState(t, w1, core.WorkerDraining)
	b.run(t, 6*time.Second)
	if a := b.agent(t, i1); !a.Draining || a.Stopped {
		t.Fatalf("agent 1 after drain: %+v, want draining and still running its task", a)
	}
	b.setState(t, w2, core.WorkerFailed)
	b.run(t, 6*time.Second)
	if a := b.agent(t, i2); !a.Stopped || a.StopReason != "told to stop" {
		t.Fatalf("agent 2 after failed: %+v", a)
	}
	b.run(t, time.Minute)
	a := b.agent(t, i1)
	if !a.Stopped || a.StopReason != "drained" || a.Done != 1 {
		t.Fatalf("agent 1 after its task: %+v, want drained after finishing 1 task", a)
	}
	// Nobody claimed the third task: the drained agent took nothing new.
	queued := 0
	for _, id := range ids {
		if b.task(t, id).State == core.TaskQueued {
			queued++
		}
	}
	if queued != 1 {
		t.Fatalf("queued tasks = %d, want 1", queued)
	}
}

func TestFleetInstanceGoneAndScripts(t *testing.T) {
	b := setupFleet(t, psim.Script{}, FleetOptions{})
	_, iid := b.spawn(t, 1)
	b.p.SetScript(pl.Key("default"), psim.Script{NeverBoot: true})
	_, never := b.spawn(t, 1)
	b.p.SetScript(pl.Key("default"), psim.Script{CrashAfter: 30 * time.Second})
	_, crash := b.spawn(t, 1)

	b.run(t, 10*time.Second)
	if !b.agent(t, iid).Registered || !b.agent(t, crash).Registered {
		t.Fatalf("agents did not register: %+v", b.fleet.Agents())
	}
	if a, ok := b.fleet.Agent(never); ok && a.Registered {
		t.Fatalf("NeverBoot agent registered: %+v", a)
	}
	b.p.Kill(iid)
	b.run(t, 30*time.Second)
	if a := b.agent(t, iid); !a.Stopped || a.StopReason != "instance gone" {
		t.Fatalf("agent on a vanished instance: %+v", a)
	}
	if a := b.agent(t, crash); !a.Stopped || a.StopReason != "agent crashed" {
		t.Fatalf("CrashAfter agent: %+v", a)
	}
}

func TestFleetHandlerErrorAndHang(t *testing.T) {
	b := setupFleet(t, psim.Script{}, FleetOptions{Concurrency: 2})
	_, iid := b.spawn(t, 0)
	ids := b.submit(t, `{"sim_duration":"5s","sim_outcome":"final"}`, `{"sim_outcome":"hang"}`)
	b.runStep(t, 2*time.Minute, 5*time.Second)
	if tk := b.task(t, ids[0]); tk.State != core.TaskFailed || tk.Error != "simulated handler error" {
		t.Fatalf("final error task: %s %q", tk.State, tk.Error)
	}
	// The hanging task stays running: the agent's heartbeats renew its lease.
	if tk := b.task(t, ids[1]); tk.State != core.TaskRunning || tk.LeaseExpiresAt.Before(b.clock.Now()) {
		t.Fatalf("hanging task %s lease %v", tk.State, tk.LeaseExpiresAt)
	}
	if a := b.agent(t, iid); a.Failed != 1 || a.Running != 1 {
		t.Fatalf("agent: %+v", a)
	}
}

func TestFleetDeterministic(t *testing.T) {
	trace := func() string {
		b := setupFleet(t, psim.Script{ProvisionDist: psim.Uniform(10*time.Second, time.Minute), BootDist: psim.Uniform(5*time.Second, 30*time.Second)}, FleetOptions{})
		var params []string
		for i := range 6 {
			params = append(params, fmt.Sprintf(`{"sim_duration":"20s","n":%d}`, i))
		}
		b.submit(t, params...)
		var iids []string
		for range 3 {
			_, iid := b.spawn(t, 1)
			iids = append(iids, iid)
		}
		b.runStep(t, 3*time.Minute, 3*time.Second)
		out := ""
		for _, iid := range iids {
			a := b.agent(t, iid)
			out += fmt.Sprintf("%s done=%d hb=%d last=%s;", iid, a.Done, a.Heartbeats, a.LastBeatAt.Format(time.TimeOnly))
		}
		return out
	}
	first, second := trace(), trace()
	if first != second {
		t.Fatalf("same seed, different runs:\n%s\n%s", first, second)
	}
}

func TestFleetAbandonsLostLease(t *testing.T) {
	b := setupFleet(t, psim.Script{}, FleetOptions{})
	_, iid := b.spawn(t, 1)
	ids := b.submit(t, `{"sim_outcome":"hang"}`)
	b.run(t, 3*time.Second)
	if a := b.agent(t, iid); a.Running != 1 {
		t.Fatalf("agent should hold the hanging task: %+v", a)
	}
	if _, err := b.q.Cancel(b.ctx, ids[0]); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	next := b.submit(t, `{"sim_duration":"5s"}`)[0]
	b.run(t, 15*time.Second)
	a := b.agent(t, iid)
	if a.Stopped || a.Done != 1 {
		t.Fatalf("after the lease was lost the agent should drop it and run the next task: %+v", a)
	}
	if tk := b.task(t, next); tk.State != core.TaskSucceeded {
		t.Fatalf("next task %s", tk.State)
	}
}
