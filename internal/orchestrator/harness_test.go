package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/sim/simagent"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/google/uuid"
)

// Placement keys of the test pool's two candidates.
var (
	plA  = provider.Placement{GPU: "RTX4090", Region: "EU-RO-1", Cloud: "SECURE"}
	plB  = provider.Placement{GPU: "L40S", Region: "EU-SE-1", Cloud: "SECURE"}
	keyA = plA.Key("default")
	keyB = plB.Key("default")
)

// t0 is the scenarios' start: 18:00 UTC like the seed report.
var t0 = time.Date(2025, 10, 15, 18, 0, 0, 0, time.UTC)

// testConfig is a pool "default" on the sim provider with candidates A
// then B.
func testConfig() *config.Config {
	return &config.Config{
		PublicURL:         "http://127.0.0.1:8080",
		Tick:              config.Duration(2 * time.Second),
		HeartbeatInterval: config.Duration(5 * time.Second),
		HeartbeatTimeout:  config.Duration(25 * time.Second),
		Tasks:             config.TasksConfig{OwnerLimit: 5, MaxLost: 3},
		Pools: map[string]*config.PoolConfig{"default": {
			Provider:        "sim",
			Min:             0,
			Max:             3,
			Concurrency:     1,
			MaxSpawnPerTick: 4,
			Image:           "registry.example.com/worker:1",
			Env:             map[string]string{"HF_HOME": "/cache"},
			Candidates: []config.CandidateConfig{
				{GPU: plA.GPU, Regions: []string{plA.Region}, Cloud: plA.Cloud},
				{GPU: plB.GPU, Regions: []string{plB.Region}, Cloud: plB.Cloud},
			},
		}},
	}
}

// countingStore counts store calls by method. It embeds the real store:
// no database mock, only a tally.
type countingStore struct {
	store.Store
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingStore) inc(m string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[m]++
}

func (c *countingStore) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = map[string]int{}
	return out
}

func (c *countingStore) WorkerList(ctx context.Context, p *store.WorkerListParams) ([]*core.Worker, error) {
	c.inc("WorkerList")
	return c.Store.WorkerList(ctx, p)
}
func (c *countingStore) WorkerActivity(ctx context.Context) ([]store.WorkerActivity, error) {
	c.inc("WorkerActivity")
	return c.Store.WorkerActivity(ctx)
}
func (c *countingStore) WorkerUpdate(ctx context.Context, p *store.WorkerUpdateParams) (*core.Worker, error) {
	c.inc("WorkerUpdate")
	return c.Store.WorkerUpdate(ctx, p)
}
func (c *countingStore) WorkerGet(ctx context.Context, id uuid.UUID) (*core.Worker, error) {
	c.inc("WorkerGet")
	return c.Store.WorkerGet(ctx, id)
}
func (c *countingStore) TaskDemand(ctx context.Context, p *store.TaskDemandParams) (map[string]store.PoolDemand, error) {
	c.inc("TaskDemand")
	return c.Store.TaskDemand(ctx, p)
}
func (c *countingStore) BreakerGetAll(ctx context.Context) ([]*core.BreakerState, error) {
	c.inc("BreakerGetAll")
	return c.Store.BreakerGetAll(ctx)
}
func (c *countingStore) BreakerPut(ctx context.Context, s *core.BreakerState) error {
	c.inc("BreakerPut")
	return c.Store.BreakerPut(ctx, s)
}
func (c *countingStore) Tx(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	c.inc("Tx")
	return c.Store.Tx(ctx, fn)
}
func (c *countingStore) EventInsertMany(ctx context.Context, evs []*core.Event) error {
	c.inc("EventInsertMany")
	return c.Store.EventInsertMany(ctx, evs)
}
func (c *countingStore) WorkerInsert(ctx context.Context, w *core.Worker) error {
	c.inc("WorkerInsert")
	return c.Store.WorkerInsert(ctx, w)
}

// harness wires a real SQLite store, the queue, the sim provider and its
// agents, and the orchestrator on one fake clock.
type harness struct {
	t     *testing.T
	ctx   context.Context
	clock *core.FakeClock
	raw   store.Store
	st    *countingStore
	cfg   *config.Config
	q     *queue.Service
	prov  *sim.Provider
	fleet *simagent.Fleet
	o     *Orchestrator
	// reports holds every tick's report, in order.
	reports []*TickReport
}

type harnessOpts struct {
	cfg   func(*config.Config)
	fleet simagent.FleetOptions
	sim   sim.Options
}

func newHarness(t *testing.T, opts harnessOpts) *harness {
	t.Helper()
	ctx := t.Context()
	clock := core.NewFakeClock(t0)
	raw, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "drover.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	if _, err := raw.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	cfg := testConfig()
	if opts.cfg != nil {
		opts.cfg(cfg)
	}
	cs := &countingStore{Store: raw, calls: map[string]int{}}
	q := queue.New(cs, clock, queue.Config{
		OwnerLimit:    cfg.Tasks.OwnerLimit,
		MaxLost:       cfg.Tasks.MaxLost,
		LeaseDuration: cfg.HeartbeatTimeout.D(),
	}, slog.New(slog.DiscardHandler))
	prov := sim.New(clock, opts.sim)
	h := &harness{t: t, ctx: ctx, clock: clock, raw: raw, st: cs, cfg: cfg, q: q, prov: prov,
		fleet: simagent.NewFleet(prov, q, opts.fleet)}
	h.o = h.newOrchestrator()
	return h
}

// newOrchestrator builds a fresh orchestrator over the same store and
// provider (a restart).
func (h *harness) newOrchestrator() *Orchestrator {
	h.t.Helper()
	o, err := New(Deps{Store: h.st, Queue: h.q, Providers: map[string]provider.Provider{"sim": h.prov},
		Clock: h.clock, Config: h.cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		h.t.Fatalf("new orchestrator: %v", err)
	}
	return o
}

// tick runs one orchestrator tick at the current time, then the leader's
// maintenance services that are due (Run starts them as services; the
// harness drives the clock, so it runs them in step).
func (h *harness) tick() *TickReport {
	h.t.Helper()
	rep, err := h.o.Tick(h.ctx)
	if err != nil {
		h.t.Fatalf("tick at %s: %v", h.since(), err)
	}
	h.reports = append(h.reports, rep)
	if err := h.o.MaintainDue(h.ctx); err != nil {
		h.t.Fatalf("maintenance at %s: %v", h.since(), err)
	}
	return rep
}

// step advances the clock by one tick period, steps the agents and ticks.
func (h *harness) step() *TickReport {
	h.t.Helper()
	h.clock.Advance(h.cfg.Tick.D())
	if err := h.fleet.Step(h.ctx); err != nil {
		h.t.Fatalf("fleet step: %v", err)
	}
	return h.tick()
}

// run steps for d of simulated time.
func (h *harness) run(d time.Duration) {
	h.t.Helper()
	for end := h.clock.Now().Add(d); h.clock.Now().Before(end); {
		h.step()
	}
}

// runUntil steps until cond holds, failing after limit of simulated time.
func (h *harness) runUntil(limit time.Duration, what string, cond func() bool) {
	h.t.Helper()
	for end := h.clock.Now().Add(limit); !cond(); {
		if !h.clock.Now().Before(end) {
			h.t.Fatalf("after %s: %s never happened", h.since(), what)
		}
		h.step()
	}
}

func (h *harness) since() time.Duration { return h.clock.Now().Sub(t0) }

// submit submits n tasks of owner with the sim params.
func (h *harness) submit(n int, owner string, params string) []uuid.UUID {
	h.t.Helper()
	reqs := make([]queue.SubmitRequest, n)
	for i := range reqs {
		reqs[i] = queue.SubmitRequest{Type: "render", Owner: owner, Params: json.RawMessage(params)}
	}
	res, err := h.q.Submit(h.ctx, reqs)
	if err != nil {
		h.t.Fatalf("submit: %v", err)
	}
	ids := make([]uuid.UUID, len(res))
	for i, r := range res {
		ids[i] = r.Task.ID
	}
	return ids
}

func (h *harness) task(id uuid.UUID) *core.Task {
	h.t.Helper()
	tk, err := h.raw.TaskGet(h.ctx, id)
	if err != nil {
		h.t.Fatalf("get task: %v", err)
	}
	return tk
}

func (h *harness) worker(id uuid.UUID) *core.Worker {
	h.t.Helper()
	w, err := h.raw.WorkerGet(h.ctx, id)
	if err != nil {
		h.t.Fatalf("get worker: %v", err)
	}
	return w
}

// allWorkers lists every worker row, terminated ones included.
func (h *harness) allWorkers() []*core.Worker {
	h.t.Helper()
	ws, err := h.raw.WorkerList(h.ctx, &store.WorkerListParams{States: []core.WorkerState{
		core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting, core.WorkerReady, core.WorkerDraining,
		core.WorkerTerminating, core.WorkerTerminated, core.WorkerFailed}})
	if err != nil {
		h.t.Fatalf("list workers: %v", err)
	}
	return ws
}

func (h *harness) workersIn(states ...core.WorkerState) []*core.Worker {
	var out []*core.Worker
	for _, w := range h.allWorkers() {
		if slices.Contains(states, w.State) {
			out = append(out, w)
		}
	}
	return out
}

func (h *harness) failedWorkers() []*core.Worker {
	var out []*core.Worker
	for _, w := range h.allWorkers() {
		if w.Failure != "" {
			out = append(out, w)
		}
	}
	return out
}

func (h *harness) breakerState(key string) *core.BreakerState {
	h.t.Helper()
	all, err := h.raw.BreakerGetAll(h.ctx)
	if err != nil {
		h.t.Fatalf("breakers: %v", err)
	}
	for _, b := range all {
		if b.Key == key {
			return b
		}
	}
	return &core.BreakerState{Key: key, Status: core.BreakerClosed}
}

func (h *harness) events(kinds ...core.EventKind) []*core.Event {
	h.t.Helper()
	evs, err := h.raw.EventList(h.ctx, &store.EventListParams{Kinds: kinds, Limit: 10000})
	if err != nil {
		h.t.Fatalf("events: %v", err)
	}
	slices.Reverse(evs) // oldest first
	return evs
}

func (h *harness) tasksIn(state core.TaskState) int {
	h.t.Helper()
	n, err := h.raw.TaskCountByState(h.ctx)
	if err != nil {
		h.t.Fatalf("count tasks: %v", err)
	}
	return n[state]
}

// spawns returns every worker spawned over all reports.
func (h *harness) spawns() []uuid.UUID {
	var out []uuid.UUID
	for _, r := range h.reports {
		out = append(out, r.Spawned...)
	}
	return out
}

func (h *harness) createCalls() []sim.Call {
	var out []sim.Call
	for _, c := range h.prov.Calls() {
		if c.Op == "create" {
			out = append(out, c)
		}
	}
	return out
}

func failures(b *core.BreakerState) (failed, ok int) {
	for _, o := range b.Outcomes {
		if o.Success {
			ok++
		} else {
			failed++
		}
	}
	return failed, ok
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func contains(t *testing.T, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%s = %q, want it to contain %q", what, s, sub)
	}
}

func params(d time.Duration, outcome string) string {
	return fmt.Sprintf(`{"sim_duration":%q,"sim_outcome":%q}`, d.String(), outcome)
}
