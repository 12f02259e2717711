package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/orchestrator"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
)

// TickConfig is the workload of the tick benchmark.
type TickConfig struct {
	// Workers is the number of ready workers (sim instances and rows)
	// (10,000).
	Workers int
	// Busy is how many of them run one task each (claimed during set-up);
	// a negative value means all of them.
	Busy int
	// Tasks is the number of tasks pre-loaded (1,000,000); Busy of them
	// are running, the rest queued and claimable.
	Tasks int
	// Ticks is how many ticks are measured after one warm-up tick (10).
	Ticks int
	// Wakes is how many submit → spawn-decision latencies are measured (5).
	Wakes int
	// Now measures durations (default time.Now).
	Now func() time.Time
	// Progress, when set, receives one line per set-up phase.
	Progress io.Writer
	// TickProfile, when set, receives a CPU profile of the measured ticks
	// only (not the pre-load), for go tool pprof.
	TickProfile io.Writer
}

// TickResult is what the tick benchmark measured.
type TickResult struct {
	Backend string
	Workers int
	Busy    int
	Tasks   int
	// Load is the time taken to pre-load tasks, workers and instances.
	Load time.Duration
	// Ticks are the measured tick durations, in order.
	Ticks            []time.Duration
	TickP50, TickMax time.Duration
	TickMin          time.Duration
	// StoreCalls is the number of store calls of one steady tick.
	StoreCalls int
	// TickCPU is the process CPU time (user + system, all goroutines) per
	// measured tick, averaged: unlike the wall time it barely moves when
	// the machine is loaded. Zero where it is not measured.
	TickCPU time.Duration
	// Wakes are submit → spawn-decision latencies through Run's wake-up.
	Wakes            []time.Duration
	WakeP50, WakeMax time.Duration
	// SubmitP50 is the submit call's own share of the wake-up latency;
	// WokenTickP50 the duration of the tick that made the decision.
	SubmitP50, WokenTickP50 time.Duration
	// Maintenance is the duration of one pass of each leader maintenance
	// service (package maintenance), in order: they run beside the loop,
	// not in the tick.
	Maintenance []MaintenancePass
}

// MaintenancePass is one timed maintenance pass.
type MaintenancePass struct {
	Name     string
	Duration time.Duration
}

// Print writes the result as a short report.
func (r *TickResult) Print(w io.Writer) {
	fmt.Fprintf(w, "backend %s: %d ready workers (%d running a task), %d tasks (%d queued)\n", r.Backend, r.Workers, r.Busy, r.Tasks, r.Tasks-r.Busy)
	fmt.Fprintf(w, "pre-load:  %s\n", r.Load.Round(time.Millisecond))
	fmt.Fprintf(w, "tick:      p50 %s  min %s  max %s  over %d ticks (%d store calls per tick)\n", fmtDur(r.TickP50), fmtDur(r.TickMin), fmtDur(r.TickMax), len(r.Ticks), r.StoreCalls)
	if r.TickCPU > 0 {
		fmt.Fprintf(w, "tick CPU:  %s per tick (process user + system time, averaged)\n", fmtDur(r.TickCPU))
	}
	fmt.Fprintf(w, "wake-up:   submit → spawn decision p50 %s  max %s  over %d submits (submit call p50 %s, woken tick p50 %s)\n",
		fmtDur(r.WakeP50), fmtDur(r.WakeMax), len(r.Wakes), fmtDur(r.SubmitP50), fmtDur(r.WokenTickP50))
	if len(r.Maintenance) > 0 {
		parts := make([]string, len(r.Maintenance))
		for i, m := range r.Maintenance {
			parts[i] = m.Name + " " + fmtDur(m.Duration)
		}
		fmt.Fprintf(w, "maintenance (beside the loop, one pass each): %s\n", strings.Join(parts, ", "))
	}
}

// benchPool is the pool of the pre-loaded fleet; wakePool the empty pool
// the wake-up latency spawns into.
const (
	benchPool = "bench"
	wakePool  = "wake"
)

// RunTick measures one orchestrator tick over a large fleet: cfg.Workers
// ready workers (rows plus sim instances) each running a task, and
// cfg.Tasks tasks in all. The store must hold no live workers (the
// orchestrator reconciles every worker row it sees, so a shared database
// would be changed): it refuses otherwise. Then it measures the latency
// from a submit to the spawn decision of the tick that submit wakes.
func RunTick(ctx context.Context, st store.Store, cfg TickConfig) (*TickResult, error) {
	cfg.Workers = cmp.Or(cfg.Workers, 10000)
	cfg.Tasks = cmp.Or(cfg.Tasks, 1000000)
	cfg.Ticks = cmp.Or(cfg.Ticks, 10)
	cfg.Wakes = cmp.Or(cfg.Wakes, 5)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Busy < 0 || cfg.Busy > cfg.Workers {
		cfg.Busy = cfg.Workers
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	switch {
	case cfg.Workers < 1 || cfg.Workers > 100000:
		return nil, core.Invalid("workers", "must be between 1 and 100000 (got %d)", cfg.Workers)
	case cfg.Tasks < cfg.Workers:
		return nil, core.Invalid("tasks", "must be at least --workers (%d), got %d", cfg.Workers, cfg.Tasks)
	case cfg.Ticks < 1 || cfg.Ticks > 1000:
		return nil, core.Invalid("ticks", "must be between 1 and 1000 (got %d)", cfg.Ticks)
	case cfg.Wakes < 0 || cfg.Wakes > 100:
		return nil, core.Invalid("wakes", "must be between 0 and 100 (got %d)", cfg.Wakes)
	}
	live, err := st.WorkerList(ctx, &store.WorkerListParams{LiveOnly: true, Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("bench tick: list workers: %w", err)
	}
	if len(live) > 0 {
		return nil, core.Invalid("db", "bench tick needs a database without live workers (it reconciles every worker row it sees); use a fresh database")
	}

	// A fixed fake clock: heartbeats stay fresh, leases valid, so every
	// measured tick is the same steady-state pass.
	clock := core.NewFakeClock(time.Now().UTC().Truncate(time.Second))
	now := clock.Now()
	res := &TickResult{Backend: st.Backend(), Workers: cfg.Workers, Busy: cfg.Busy, Tasks: cfg.Tasks}
	prov := sim.New(clock, sim.Options{})
	pl := provider.Placement{GPU: "bench-gpu", Region: "local"}
	start := cfg.Now()

	progress("pre-loading %d tasks…", cfg.Tasks)
	for off := 0; off < cfg.Tasks; off += insertBatch {
		n := min(insertBatch, cfg.Tasks-off)
		batch := make([]*core.Task, n)
		for i := range batch {
			batch[i] = &core.Task{ID: uuid.New(), Type: "bench", Params: json.RawMessage(`{}`), Owner: fmt.Sprintf("owner-%d", (off+i)%100),
				Pool: benchPool, MaxAttempts: core.DefaultMaxAttempts, MaxLost: core.DefaultMaxLost, Timeout: core.DefaultTaskTimeout,
				State: core.TaskQueued, CreatedAt: now, RunAfter: now, UpdatedAt: now}
		}
		if _, err := st.TaskInsertMany(ctx, &store.TaskInsertManyParams{Now: now, Tasks: batch}); err != nil {
			return nil, fmt.Errorf("bench tick: insert tasks: %w", err)
		}
		if off+n == earlyAnalyzeAt {
			// Stand in for autovacuum's first analyze (off on the
			// benchmark server): without statistics PostgreSQL's generic
			// plans, made once per connection while the table was tiny,
			// read the inserted rows back by a sequential scan, and the
			// pre-load goes quadratic.
			if err := vacuumAnalyze(ctx, st, func(string, ...any) {}); err != nil {
				return nil, err
			}
		}
	}
	progress("pre-loading %d workers and instances…", cfg.Workers)
	ids := make([]uuid.UUID, cfg.Workers)
	for i := range ids {
		ids[i] = uuid.New()
		inst := prov.Inject(provider.Instance{WorkerID: ids[i].String(), Pool: benchPool, Placement: pl, PricePerHour: 0.5, CreatedAt: now})
		ready := now
		w := &core.Worker{ID: ids[i], Pool: benchPool, Provider: "sim", Placement: pl.Key(benchPool), GPUType: pl.GPU, Region: pl.Region,
			InstanceID: inst, State: core.WorkerReady, TokenHash: strings.Repeat("0", 64), Concurrency: 1, PricePerHour: 0.5,
			CreatedAt: now, StateChangedAt: now, ReadyAt: &ready, LastHeartbeatAt: &ready}
		if err := st.WorkerInsert(ctx, w); err != nil {
			return nil, fmt.Errorf("bench tick: insert worker: %w", err)
		}
	}
	if err := vacuumAnalyze(ctx, st, progress); err != nil {
		return nil, err
	}
	progress("claiming one task for each of %d busy workers…", cfg.Busy)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, id := range ids[:cfg.Busy] {
		g.Go(func() error {
			all, err := st.TaskClaim(gctx, []*store.TaskClaimParams{{Now: now, WorkerID: id, Pool: benchPool, Max: 1, LeaseDuration: time.Hour}})
			if err != nil {
				return fmt.Errorf("bench tick: claim: %w", err)
			}
			got := all[0]
			if len(got) != 1 {
				return fmt.Errorf("bench tick: worker %s claimed %d tasks, want 1", id, len(got))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := vacuumAnalyze(ctx, st, progress); err != nil {
		return nil, err
	}
	res.Load = cfg.Now().Sub(start)

	pool := func(max int) *config.PoolConfig {
		return &config.PoolConfig{Provider: "sim", Max: max, Concurrency: 1, MaxSpawnPerTick: 4,
			Candidates: []config.CandidateConfig{{GPU: pl.GPU, Regions: []string{pl.Region}}}}
	}
	ocfg := &config.Config{
		PublicURL: "http://127.0.0.1:8080",
		// Only wake-ups tick in Run: the ticker never fires during the run.
		Tick:             config.Duration(time.Hour),
		HeartbeatTimeout: config.Duration(25 * time.Second),
		Pools:            map[string]*config.PoolConfig{benchPool: pool(cfg.Workers), wakePool: pool(cfg.Wakes + 1)},
	}
	counting := &tickCountingStore{Store: st}
	q := queue.New(counting, clock, queue.Config{OwnerLimit: 0, LeaseDuration: time.Hour}, slog.New(slog.DiscardHandler))
	reports := make(chan *orchestrator.TickReport, 16)
	passes := make(chan string, 64)
	o, err := orchestrator.New(orchestrator.Deps{Store: counting, Queue: q, Providers: map[string]provider.Provider{"sim": prov},
		Clock: clock, Config: ocfg, Logger: slog.New(slog.DiscardHandler),
		AfterTick:         func(r *orchestrator.TickReport) { reports <- r },
		OnMaintenancePass: func(name string, _ error) { passes <- name }})
	if err != nil {
		return nil, fmt.Errorf("bench tick: %w", err)
	}

	progress("ticking…")
	var cpu0 time.Duration
	for i := 0; i <= cfg.Ticks; i++ {
		if i == 1 {
			cpu0 = ProcessCPU()
		}
		if i == 1 && cfg.TickProfile != nil {
			if err := pprof.StartCPUProfile(cfg.TickProfile); err != nil {
				return nil, fmt.Errorf("bench tick: cpu profile: %w", err)
			}
		}
		counting.calls.Store(0)
		t0 := cfg.Now()
		rep, err := o.Tick(ctx)
		d := cfg.Now().Sub(t0)
		if err != nil {
			return nil, fmt.Errorf("bench tick: tick %d: %w", i, err)
		}
		if len(rep.Spawned)+len(rep.Failed)+len(rep.Drained)+len(rep.Terminated) > 0 {
			return nil, fmt.Errorf("bench tick: tick %d was not steady: %d spawned, %d failed, %d drained, %d terminated",
				i, len(rep.Spawned), len(rep.Failed), len(rep.Drained), len(rep.Terminated))
		}
		if i == 0 {
			continue // warm-up
		}
		res.Ticks = append(res.Ticks, d)
		res.StoreCalls = int(counting.calls.Load())
	}
	if cpu := ProcessCPU(); cpu0 > 0 {
		res.TickCPU = (cpu - cpu0) / time.Duration(cfg.Ticks)
	}
	if cfg.TickProfile != nil {
		pprof.StopCPUProfile()
	}
	res.TickP50, res.TickMin, res.TickMax = tickPercentile(res.Ticks, 50), slices.Min(res.Ticks), slices.Max(res.Ticks)

	progress("timing one pass of each maintenance service…")
	for _, svc := range o.Maintenance().Services() {
		t0 := cfg.Now()
		if err := svc.RunNow(ctx); err != nil {
			return nil, fmt.Errorf("bench tick: maintenance %s: %w", svc.Name(), err)
		}
		<-passes
		res.Maintenance = append(res.Maintenance, MaintenancePass{Name: svc.Name(), Duration: cfg.Now().Sub(t0)})
	}

	if cfg.Wakes > 0 {
		progress("measuring submit → spawn decision…")
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- o.Run(rctx) }()
		// Run ticks once at start (and once more when elected): let those
		// pass before measuring.
		if err := drainStartup(ctx, reports); err != nil {
			cancel()
			return nil, err
		}
		// Winning leadership starts the maintenance services, each with a
		// pass at once: let those end too.
		for range o.Maintenance().Services() {
			select {
			case <-passes:
			case <-time.After(60 * time.Second):
				cancel()
				return nil, fmt.Errorf("bench tick: the maintenance services did not pass within 60s of leadership")
			}
		}
		var submits, woken []time.Duration
		for range cfg.Wakes {
			t0 := cfg.Now()
			if _, err := q.Submit(ctx, []queue.SubmitRequest{{Type: "bench", Pool: wakePool}}); err != nil {
				cancel()
				return nil, fmt.Errorf("bench tick: submit: %w", err)
			}
			submits = append(submits, cfg.Now().Sub(t0))
			for spawned := false; !spawned; {
				select {
				case r := <-reports:
					if spawned = len(r.Spawned) > 0; spawned {
						woken = append(woken, r.Duration)
					}
				case <-time.After(30 * time.Second):
					cancel()
					return nil, fmt.Errorf("bench tick: no spawn decision 30s after a submit")
				}
			}
			res.Wakes = append(res.Wakes, cfg.Now().Sub(t0))
		}
		cancel()
		if err := <-done; err != nil {
			return nil, fmt.Errorf("bench tick: run: %w", err)
		}
		res.WakeP50, res.WakeMax = tickPercentile(res.Wakes, 50), slices.Max(res.Wakes)
		res.SubmitP50, res.WokenTickP50 = tickPercentile(submits, 50), tickPercentile(woken, 50)
	}
	return res, nil
}

// drainStartup waits for Run's first tick, then for any tick already
// queued behind it, so the measured wake-ups start from an idle loop.
func drainStartup(ctx context.Context, reports <-chan *orchestrator.TickReport) error {
	select {
	case <-reports:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("bench tick: Run did not tick within 30s")
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		select {
		case <-reports:
		case <-time.After(500 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pct returns the p-th percentile (nearest rank) of ds.
func tickPercentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

// tickCountingStore counts the store calls a tick makes (the real store
// does the work).
type tickCountingStore struct {
	store.Store
	calls atomic.Int64
}

func (c *tickCountingStore) WorkerList(ctx context.Context, p *store.WorkerListParams) ([]*core.Worker, error) {
	c.calls.Add(1)
	return c.Store.WorkerList(ctx, p)
}

func (c *tickCountingStore) WorkerActivity(ctx context.Context) ([]store.WorkerActivity, error) {
	c.calls.Add(1)
	return c.Store.WorkerActivity(ctx)
}

func (c *tickCountingStore) WorkerUpdate(ctx context.Context, p *store.WorkerUpdateParams) (*core.Worker, error) {
	c.calls.Add(1)
	return c.Store.WorkerUpdate(ctx, p)
}

func (c *tickCountingStore) WorkerInsert(ctx context.Context, w *core.Worker) error {
	c.calls.Add(1)
	return c.Store.WorkerInsert(ctx, w)
}

func (c *tickCountingStore) TaskDemand(ctx context.Context, p *store.TaskDemandParams) (map[string]store.PoolDemand, error) {
	c.calls.Add(1)
	return c.Store.TaskDemand(ctx, p)
}

func (c *tickCountingStore) Tx(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	c.calls.Add(1)
	return c.Store.Tx(ctx, fn)
}

func (c *tickCountingStore) BreakerGetAll(ctx context.Context) ([]*core.BreakerState, error) {
	c.calls.Add(1)
	return c.Store.BreakerGetAll(ctx)
}

func (c *tickCountingStore) BreakerPut(ctx context.Context, b *core.BreakerState) error {
	c.calls.Add(1)
	return c.Store.BreakerPut(ctx, b)
}

func (c *tickCountingStore) EventInsertMany(ctx context.Context, evs []*core.Event) error {
	c.calls.Add(1)
	return c.Store.EventInsertMany(ctx, evs)
}

// earlyAnalyzeAt is the number of pre-loaded tasks after which the tick
// benchmark gathers planner statistics for the first time.
const earlyAnalyzeAt = 20 * insertBatch

// vacuumAnalyzer is implemented by stores that want VACUUM ANALYZE after a
// bulk load (PostgreSQL): without statistics the planner may sort the
// whole queue for every claim, and without a visibility map the demand
// counts read the heap.
type vacuumAnalyzer interface {
	VacuumAnalyze(ctx context.Context) error
}

// vacuumAnalyze runs VacuumAnalyze when the store has it.
func vacuumAnalyze(ctx context.Context, st store.Store, progress func(string, ...any)) error {
	va, ok := st.(vacuumAnalyzer)
	if !ok {
		return nil
	}
	progress("VACUUM ANALYZE…")
	if err := va.VacuumAnalyze(ctx); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}
