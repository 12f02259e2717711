package orchestrator

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// readyFleet inserts n ready workers of the default pool, each with a
// running sim instance and a heartbeat now.
func readyFleet(h *harness, n int) []*core.Worker {
	h.t.Helper()
	now := h.clock.Now()
	ws := make([]*core.Worker, 0, n)
	for range n {
		id := uuid.New()
		inst := h.prov.Inject(provider.Instance{WorkerID: id.String(), Pool: "default", Placement: plA})
		w := &core.Worker{ID: id, Pool: "default", Provider: "sim", Placement: keyA, InstanceID: inst, State: core.WorkerReady,
			TokenHash: strings.Repeat("0", 64), Concurrency: 1, CreatedAt: now, StateChangedAt: now, ReadyAt: &now, LastHeartbeatAt: &now}
		if err := h.raw.WorkerInsert(h.ctx, w); err != nil {
			h.t.Fatalf("insert worker: %v", err)
		}
		ws = append(ws, w)
	}
	return ws
}

// fixedPool sets the default pool to exactly n workers.
func fixedPool(n int) func(*config.Config) {
	return func(c *config.Config) { c.Pools["default"].Min, c.Pools["default"].Max = n, n }
}

// beat sends a heartbeat through the queue, as the API does.
func (h *harness) beat(id uuid.UUID) {
	h.t.Helper()
	if _, err := h.q.Heartbeat(h.ctx, id, queue.HeartbeatInfo{}); err != nil {
		h.t.Fatalf("heartbeat of %s: %v", id, err)
	}
}

// reads returns the fleet reads of the ticks since the last call.
func (h *harness) reads() (full, activity int) {
	c := h.st.reset()
	return c["WorkerList"], c["WorkerActivity"]
}

// The leader reads the fleet in full once, then only the activity the
// queue writes: a heartbeat recorded between two ticks is seen by the
// next one, so the worker that beat stays and the one that did not is
// lost.
func TestFleetSeesQueueHeartbeats(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: fixedPool(2)})
	ws := readyFleet(h, 2)
	h.tick()
	full, act := h.reads()
	eq(t, "full reads of the first tick", full, 1)
	eq(t, "activity reads of the first tick", act, 0)

	h.clock.Advance(20 * time.Second)
	h.beat(ws[0].ID)
	rep := h.tick()
	eq(t, "failures at 20s", len(rep.Failed), 0)
	full, act = h.reads()
	eq(t, "full reads of a steady tick", full, 0)
	eq(t, "activity reads of a steady tick", act, 1)

	// 30s: worker 1 beat 10s ago, worker 2 30s ago (heartbeat_timeout 25s).
	h.clock.Advance(10 * time.Second)
	rep = h.tick()
	eq(t, "failures at 30s", len(rep.Failed), 1)
	eq(t, "worker that did not beat", rep.Failed[ws[1].ID], core.FailHeartbeatLost)
	eq(t, "worker that beat", h.worker(ws[0].ID).State, core.WorkerReady)
	full, _ = h.reads()
	eq(t, "full reads when a worker is lost", full, 0)
}

// A completion recorded by the queue reaches the idle scale-down decision:
// the worker is idle from its last task, not from when it became ready.
func TestFleetSeesCompletionsForIdleScaleDown(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *config.Config) { c.Pools["default"].IdleTimeout = config.Duration(time.Minute) }})
	w := readyFleet(h, 1)[0]
	h.submit(1, "", params(time.Minute, "succeed"))
	tasks, err := h.q.Claim(h.ctx, w.ID, 1)
	if err != nil || len(tasks) != 1 {
		t.Fatalf("claim: %d tasks, %v", len(tasks), err)
	}
	h.tick() // the full read: the worker runs a task
	h.reads()
	start := h.clock.Now()
	var drainedAt time.Duration
	for i := 1; i <= 6 && drainedAt == 0; i++ {
		h.clock.Advance(20 * time.Second)
		h.beat(w.ID)
		if i == 2 { // 40s: the task finishes
			lease := core.Lease{TaskID: tasks[0].ID, Token: *tasks[0].LeaseToken}
			if err := h.q.Complete(h.ctx, w.ID, lease, nil); err != nil {
				t.Fatalf("complete: %v", err)
			}
		}
		rep := h.tick()
		if len(rep.Drained) > 0 {
			eq(t, "drained", rep.Drained[0], w.ID)
			drainedAt = h.clock.Now().Sub(start)
		}
	}
	full, _ := h.reads()
	eq(t, "full reads after the first tick", full, 0)
	// Ready since 0s, idle since the completion at 40s: idle_timeout (1m)
	// is reached at 100s, not at 60s.
	eq(t, "drained at", drainedAt, 100*time.Second)
	if c := h.o.fleet.byID[w.ID]; c == nil || c.TasksDone != 1 {
		t.Fatalf("leader's copy of the worker = %+v, want tasks done 1", c)
	}
	evs := h.events(core.EventScaleDown)
	if len(evs) != 1 {
		t.Fatalf("%d scale-down events, want 1", len(evs))
	}
	contains(t, "scale-down event", evs[0].Message, "idle 1m0s since its last task")
}

// lossyStore loses the answer of the next call of one method: the call
// reaches the database and commits, then the caller gets an error (a
// connection lost after the commit). The database is real.
type lossyStore struct {
	store.Store
	mu   sync.Mutex
	lose string
}

var errLostAnswer = errors.New("connection lost after the write")

func (l *lossyStore) loseNext(method string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lose = method
}

func (l *lossyStore) lost(method string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lose != method {
		return false
	}
	l.lose = ""
	return true
}

func (l *lossyStore) WorkerUpdate(ctx context.Context, p *store.WorkerUpdateParams) (*core.Worker, error) {
	w, err := l.Store.WorkerUpdate(ctx, p)
	if err == nil && l.lost("WorkerUpdate") {
		return nil, errLostAnswer
	}
	return w, err
}

// A worker write whose outcome is unknown fails the tick and drops the
// leader's copy: the next tick reads the fleet in full and acts on what
// the database holds.
func TestFleetReloadsAfterFailedWrite(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: fixedPool(1)})
	lossy := &lossyStore{Store: h.st}
	o, err := New(Deps{Store: lossy, Queue: h.q, Providers: map[string]provider.Provider{"sim": h.prov},
		Clock: h.clock, Config: h.cfg, Logger: h.o.log})
	if err != nil {
		t.Fatal(err)
	}
	h.o = o
	w := readyFleet(h, 1)[0]
	h.tick()
	h.clock.Advance(2 * time.Second)
	h.tick()
	full, act := h.reads()
	eq(t, "full reads", full, 1)
	eq(t, "activity reads", act, 1)

	if err := h.raw.WorkerRequestPut(h.ctx, &store.WorkerRequest{WorkerID: w.ID, Action: store.WorkerActionDrain,
		Reason: "maintenance", RequestedBy: "operator", RequestedAt: h.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	lossy.loseNext("WorkerUpdate")
	h.clock.Advance(2 * time.Second)
	if _, err := o.Tick(h.ctx); !errors.Is(err, errLostAnswer) {
		t.Fatalf("tick with a lost write: err = %v, want the lost answer", err)
	}
	eq(t, "copy kept after a failed write", o.fleet.valid, false)
	eq(t, "state written", h.worker(w.ID).State, core.WorkerDraining)
	h.reads()

	// The next tick reloads, sees the worker draining (it holds no task),
	// moves it on, and ignores the request that was already applied.
	h.clock.Advance(2 * time.Second)
	h.tick()
	full, act = h.reads()
	eq(t, "full reads after the failed write", full, 1)
	eq(t, "activity reads after the failed write", act, 0)
	eq(t, "state after the reload", h.worker(w.ID).State, core.WorkerTerminating)
	var ignored bool
	for _, e := range h.events(core.EventWorkerState) {
		ignored = ignored || strings.Contains(e.Message, "drain request by operator ignored: the worker is draining")
	}
	eq(t, "applied request ignored", ignored, true)
}

// A replica that wins leadership reads the fleet in full before it acts,
// even when it led before: another leader may have written meanwhile.
func TestFleetNewLeaderReloads(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: fixedPool(1)})
	replica := func(id string) (*Orchestrator, *Elector) {
		// The elector reads the term from the store itself (the counting
		// wrapper hides store.LeaderReader).
		el := NewElector(h.raw, h.clock, ElectorConfig{ID: id, TTL: 15 * time.Second, Interval: 5 * time.Second}, h.o.log)
		o, err := New(Deps{Store: h.st, Queue: h.q, Providers: map[string]provider.Provider{"sim": h.prov},
			Clock: h.clock, Config: h.cfg, Logger: h.o.log, Elector: el})
		if err != nil {
			t.Fatal(err)
		}
		return o, el
	}
	a, ea := replica("a")
	b, eb := replica("b")
	elect := func(el *Elector) {
		t.Helper()
		if ok, err := el.Attempt(h.ctx); err != nil || !ok {
			t.Fatalf("%s elected = %v, %v", el.ID(), ok, err)
		}
	}
	tick := func(o *Orchestrator) {
		t.Helper()
		if _, err := o.Tick(h.ctx); err != nil {
			t.Fatalf("tick of %s: %v", o.elector.ID(), err)
		}
	}
	w := readyFleet(h, 1)[0]
	elect(ea)
	tick(a)
	h.clock.Advance(2 * time.Second)
	tick(a)
	full, act := h.reads()
	eq(t, "a: full reads in term 1", full, 1)
	eq(t, "a: activity reads in term 1", act, 1)

	// a stops renewing; b takes over once the lease has expired.
	h.clock.Advance(16 * time.Second)
	h.beat(w.ID)
	elect(eb)
	tick(b)
	full, _ = h.reads()
	eq(t, "b: full reads on taking over", full, 1)
	eq(t, "b: term", b.fleet.term, int64(2))

	// b stops; a wins again, in a new term: its copy from term 1 is not
	// trusted although the worker rows did not change.
	h.clock.Advance(16 * time.Second)
	h.beat(w.ID)
	elect(ea)
	tick(a)
	full, act = h.reads()
	eq(t, "a: full reads on winning again", full, 1)
	eq(t, "a: activity reads on winning again", act, 0)
	eq(t, "a: term", a.fleet.term, int64(3))
	eq(t, "worker", h.worker(w.ID).State, core.WorkerReady)
}

// A leadership change seen by the elector's hook also drops the copy.
func TestFleetStaleOnLeadershipChange(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: fixedPool(1)})
	readyFleet(h, 1)
	h.tick()
	h.clock.Advance(2 * time.Second)
	h.tick()
	h.reads()
	h.o.leadershipChanged(h.ctx, false)
	h.clock.Advance(2 * time.Second)
	h.tick()
	full, act := h.reads()
	eq(t, "full reads after losing leadership", full, 1)
	eq(t, "activity reads after losing leadership", act, 0)
}

// A worker row written by someone other than the orchestrator (here a
// row inserted behind its back) is noticed by the activity read, and the
// fleet is read in full in the same tick.
func TestFleetReloadsOnForeignRow(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: fixedPool(2)})
	readyFleet(h, 1)
	h.tick()
	h.reads()
	late := readyFleet(h, 1)[0]
	h.clock.Advance(2 * time.Second)
	rep := h.tick()
	full, act := h.reads()
	eq(t, "activity reads", act, 1)
	eq(t, "full reads", full, 1)
	eq(t, "spawned (the foreign row counts)", len(rep.Spawned), 0)
	if h.o.fleet.byID[late.ID] == nil {
		t.Fatal("the foreign row is not in the leader's copy")
	}
}
