package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/status"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
)

// StatusConfig is the workload of the status benchmark.
type StatusConfig struct {
	// Workers is the number of live workers (10,000): all ready, each
	// running one task.
	Workers int
	// Tasks is the number of tasks (1,000,000): one running per worker,
	// Queued queued, the rest succeeded over the last 24 hours.
	Tasks  int
	Queued int
	// Events is the number of events (1,000,000), spread over the last 24
	// hours, 1 in 100 about a worker failure, the rest about tasks,
	// workers and ticks.
	Events int
	// Builds is how many status reports (and why answers) are timed (20).
	Builds int
	// Now measures durations (default time.Now).
	Now func() time.Time
	// Progress, when set, receives one line per set-up phase.
	Progress io.Writer
	// Reuse times the reports over a fleet an earlier run of the same
	// benchmark loaded into the database, instead of loading one: the
	// full-size load takes minutes, the reports a few seconds.
	Reuse bool
}

// StatusResult is what the status benchmark measured.
type StatusResult struct {
	Backend                string
	Workers, Tasks, Events int
	Load                   time.Duration
	Builds                 []time.Duration
	BuildP50, BuildMax     time.Duration
	// BuildCPUP50 is the p50 CPU time this process used per report (the
	// whole work of an in-process SQLite store; PostgreSQL's server CPU
	// is not in it): on a busy machine, the part of BuildP50 that is not
	// waiting for a core.
	BuildCPUP50              time.Duration
	WhyTaskP50, WhyWorkerP50 time.Duration
	WhyPoolP50               time.Duration
	Verdict                  string
	// Steps is the p50 of each store read of status.Build, by method.
	Steps map[string]time.Duration
}

// Print writes the result as a short report.
func (r *StatusResult) Print(w io.Writer) {
	fmt.Fprintf(w, "backend %s: %d workers, %d tasks, %d events\n", r.Backend, r.Workers, r.Tasks, r.Events)
	fmt.Fprintf(w, "pre-load:   %s\n", r.Load.Round(time.Millisecond))
	fmt.Fprintf(w, "status:     p50 %s  max %s  over %d reports (verdict %s)\n", fmtDur(r.BuildP50), fmtDur(r.BuildMax), len(r.Builds), r.Verdict)
	fmt.Fprintf(w, "            CPU of this process per report p50 %s\n", fmtDur(r.BuildCPUP50))
	fmt.Fprintf(w, "why:        task p50 %s  worker p50 %s  pool p50 %s\n", fmtDur(r.WhyTaskP50), fmtDur(r.WhyWorkerP50), fmtDur(r.WhyPoolP50))
	if len(r.Steps) > 0 {
		fmt.Fprintln(w, "status reads (p50 each, over separate timed reports):")
		printSteps(w, r.Steps)
	}
}

const statusPool = "bench"

// RunStatus pre-loads the fleet into st (which must be empty) and times
// status.Build and status.Why over it.
func RunStatus(ctx context.Context, st store.Store, cfg StatusConfig) (*StatusResult, error) {
	cfg.Workers = cmp.Or(cfg.Workers, 10000)
	cfg.Tasks = cmp.Or(cfg.Tasks, 1000000)
	cfg.Events = cmp.Or(cfg.Events, 1000000)
	cfg.Builds = cmp.Or(cfg.Builds, 20)
	cfg.Queued = cmp.Or(cfg.Queued, 20000)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.Workers < 1 || cfg.Workers > 100000:
		return nil, core.Invalid("workers", "must be between 1 and 100000 (got %d)", cfg.Workers)
	case cfg.Tasks < cfg.Workers+cfg.Queued:
		return nil, core.Invalid("tasks", "must be at least workers + queued (%d), got %d", cfg.Workers+cfg.Queued, cfg.Tasks)
	case cfg.Events < 1 || cfg.Events > 100_000_000:
		return nil, core.Invalid("events", "must be between 1 and 100000000 (got %d)", cfg.Events)
	case cfg.Builds < 1 || cfg.Builds > 1000:
		return nil, core.Invalid("builds", "must be between 1 and 1000 (got %d)", cfg.Builds)
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	existing, err := st.TaskList(ctx, &store.TaskListParams{Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("bench status: list tasks: %w", err)
	}
	res := &StatusResult{Backend: st.Backend(), Workers: cfg.Workers, Tasks: cfg.Tasks, Events: cfg.Events}
	var (
		now         time.Time
		workers     []uuid.UUID
		runningTask uuid.UUID
	)
	switch {
	case cfg.Reuse:
		if len(existing) == 0 {
			return nil, core.Invalid("reuse", "the database holds no fleet; run once without --reuse to load one")
		}
		now, workers, runningTask, err = statusLoaded(ctx, st)
		if err != nil {
			return nil, err
		}
		res.Workers = len(workers)
		// Statistics and the visibility map for what a newer binary's
		// migrations added to the loaded tables.
		if err := vacuumAnalyze(ctx, st, progress); err != nil {
			return nil, err
		}
	case len(existing) > 0:
		return nil, core.Invalid("db", "bench status needs an empty database; use a fresh one (or --reuse a loaded one)")
	default:
		start := cfg.Now()
		now, workers, runningTask, err = statusLoad(ctx, st, cfg, progress)
		if err != nil {
			return nil, err
		}
		res.Load = cfg.Now().Sub(start)
	}
	return statusTime(ctx, st, cfg, res, now, workers, runningTask, progress)
}

// statusLoaded finds what statusLoad wrote in an earlier run: its clock
// (every worker heartbeated 2 s before it), the workers in the order they
// were loaded and one running task.
func statusLoaded(ctx context.Context, st store.Store) (time.Time, []uuid.UUID, uuid.UUID, error) {
	ws, err := st.WorkerList(ctx, &store.WorkerListParams{Pool: statusPool})
	if err != nil {
		return time.Time{}, nil, uuid.Nil, fmt.Errorf("bench status: list workers: %w", err)
	}
	running, err := st.TaskList(ctx, &store.TaskListParams{States: []core.TaskState{core.TaskRunning}, Pool: statusPool, Limit: 1})
	if err != nil {
		return time.Time{}, nil, uuid.Nil, fmt.Errorf("bench status: list tasks: %w", err)
	}
	if len(ws) == 0 || ws[0].LastHeartbeatAt == nil || len(running) == 0 {
		return time.Time{}, nil, uuid.Nil, core.Invalid("reuse", "the database was not loaded by bench status")
	}
	slices.SortFunc(ws, func(a, b *core.Worker) int { return a.CreatedAt.Compare(b.CreatedAt) })
	workers := make([]uuid.UUID, len(ws))
	for i, w := range ws {
		workers[i] = w.ID
	}
	return ws[0].LastHeartbeatAt.Add(2 * time.Second).UTC(), workers, running[0].ID, nil
}

// statusLoad pre-loads the fleet, its tasks and events into an empty
// store and returns the clock the rows were written at.
func statusLoad(ctx context.Context, st store.Store, cfg StatusConfig, progress func(string, ...any)) (time.Time, []uuid.UUID, uuid.UUID, error) {
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour

	progress("pre-loading %d workers…", cfg.Workers)
	key := statusPool + "/bench-gpu/local"
	workers := make([]uuid.UUID, cfg.Workers)
	for i := range workers {
		workers[i] = uuid.New()
	}
	// A few inserters at once: one row per transaction is slow on a busy
	// PostgreSQL, and the rows are independent.
	wg, wctx := errgroup.WithContext(ctx)
	wg.SetLimit(4)
	for i := range workers {
		wg.Go(func() error {
			created := now.Add(-day + spread(day, i, 2*cfg.Workers))
			ready, beat := created.Add(2*time.Minute), now.Add(-2*time.Second)
			w := &core.Worker{ID: workers[i], Pool: statusPool, Provider: "sim", Placement: key, GPUType: "bench-gpu", Region: "local",
				InstanceID: fmt.Sprintf("inst-%d", i), State: core.WorkerReady, TokenHash: strings.Repeat("0", 64), Concurrency: 1000,
				PricePerHour: 0.5, CreatedAt: created, StateChangedAt: ready, ReadyAt: &ready, LastHeartbeatAt: &beat}
			if err := st.WorkerInsert(wctx, w); err != nil {
				return fmt.Errorf("bench status: insert worker: %w", err)
			}
			return nil
		})
	}
	if err := wg.Wait(); err != nil {
		return time.Time{}, nil, uuid.Nil, err
	}

	progress("pre-loading %d tasks (%d succeeded over 24 h)…", cfg.Tasks, cfg.Tasks-cfg.Workers-cfg.Queued)
	done := cfg.Tasks - cfg.Workers - cfg.Queued
	// Batches are inserted ahead of the claims in a second goroutine: a
	// batch's claim at its own time cannot take a later batch's tasks
	// (they run after it), so the result is the same as one after the
	// other, in less time.
	type insertedBatch struct{ off, n int }
	inserted := make(chan insertedBatch, 4)
	tg, tctx := errgroup.WithContext(ctx)
	tg.Go(func() error {
		defer close(inserted)
		for off := 0; off < cfg.Tasks; off += insertBatch {
			n := min(insertBatch, cfg.Tasks-off)
			at := now.Add(-day + spread(day, off, cfg.Tasks))
			batch := make([]*core.Task, n)
			for i := range batch {
				batch[i] = &core.Task{ID: uuid.New(), Type: "bench", Params: json.RawMessage(`{}`), Owner: fmt.Sprintf("owner-%d", (off+i)%100),
					Pool: statusPool, MaxAttempts: core.DefaultMaxAttempts, MaxLost: core.DefaultMaxLost, Timeout: core.DefaultTaskTimeout,
					State: core.TaskQueued, CreatedAt: at, RunAfter: at, UpdatedAt: at}
			}
			if _, err := st.TaskInsertMany(tctx, &store.TaskInsertManyParams{Now: at, Tasks: batch}); err != nil {
				return fmt.Errorf("bench status: insert tasks: %w", err)
			}
			select {
			case inserted <- insertedBatch{off, n}:
			case <-tctx.Done():
				return tctx.Err()
			}
		}
		return nil
	})
	tg.Go(func() error {
		for b := range inserted {
			if err := statusComplete(tctx, st, b.off, b.n, done, now.Add(-day+spread(day, b.off, cfg.Tasks)), workers); err != nil {
				return err
			}
			if b.off+b.n == earlyAnalyzeAt {
				if err := vacuumAnalyze(tctx, st, func(string, ...any) {}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err := tg.Wait(); err != nil {
		return time.Time{}, nil, uuid.Nil, err
	}
	if err := vacuumAnalyze(ctx, st, progress); err != nil {
		return time.Time{}, nil, uuid.Nil, err
	}
	progress("claiming one task for each of %d workers…", cfg.Workers)
	var runningTask uuid.UUID
	for off := 0; off < len(workers); off += 100 {
		var items []*store.TaskClaimParams
		for _, w := range workers[off:min(off+100, len(workers))] {
			items = append(items, &store.TaskClaimParams{Now: now, WorkerID: w, Pool: statusPool, Max: 1, LeaseDuration: time.Hour})
		}
		claimed, err := st.TaskClaim(ctx, items)
		if err != nil {
			return time.Time{}, nil, uuid.Nil, fmt.Errorf("bench status: claim: %w", err)
		}
		for _, got := range claimed {
			if len(got) == 1 {
				runningTask = got[0].ID
			}
		}
	}

	progress("pre-loading %d events…", cfg.Events)
	const eventBatch = 5000
	for off := 0; off < cfg.Events; off += eventBatch {
		n := min(eventBatch, cfg.Events-off)
		evs := make([]*core.Event, n)
		for i := range evs {
			j := off + i
			at := now.Add(-day + spread(day, j, cfg.Events))
			w := workers[j%len(workers)].String()
			switch {
			case j%100 == 0:
				evs[i] = &core.Event{Time: at, Kind: core.EventWorkerFailed, Pool: statusPool, WorkerID: uuid.NewString(),
					Message: "worker failed (boot-timeout)", Data: json.RawMessage(`{"class":"boot-timeout","age_s":330,"placement":"` + key + `","reason":"no heartbeat"}`)}
			case j%3 == 0:
				evs[i] = &core.Event{Time: at, Kind: core.EventTick, Message: "pool bench: maintain"}
			case j%3 == 1:
				evs[i] = &core.Event{Time: at, Kind: core.EventTaskRetried, Pool: statusPool, TaskID: uuid.NewString(), Message: "task retried"}
			default:
				evs[i] = &core.Event{Time: at, Kind: core.EventWorkerState, Pool: statusPool, WorkerID: w, Message: "worker state",
					Data: json.RawMessage(`{"from":"booting","to":"ready","placement":"` + key + `"}`)}
			}
		}
		if err := st.EventInsertMany(ctx, evs); err != nil {
			return time.Time{}, nil, uuid.Nil, fmt.Errorf("bench status: insert events: %w", err)
		}
	}
	if err := vacuumAnalyze(ctx, st, progress); err != nil {
		return time.Time{}, nil, uuid.Nil, err
	}
	return now, workers, runningTask, nil
}

// statusComplete claims and completes the succeeded share of the batch
// of n tasks at offset off (those below done), at the batch's time at.
func statusComplete(ctx context.Context, st store.Store, off, n, done int, at time.Time, workers []uuid.UUID) error {
	if off >= done {
		return nil
	}
	k := min(n, done-off)
	w := workers[(off/insertBatch)%len(workers)]
	claimed, err := st.TaskClaim(ctx, []*store.TaskClaimParams{{Now: at, WorkerID: w, Pool: statusPool, Max: k, LeaseDuration: time.Hour}})
	if err != nil {
		return fmt.Errorf("bench status: claim: %w", err)
	}
	got := claimed[0]
	items := make([]store.TaskCompletion, len(got))
	for i, t := range got {
		items[i] = store.TaskCompletion{Lease: core.Lease{TaskID: t.ID, Token: *t.LeaseToken}, Result: json.RawMessage(`{}`)}
	}
	if _, err := st.TaskComplete(ctx, []*store.TaskCompleteParams{{Now: at.Add(time.Minute), WorkerID: w, Items: items}}); err != nil {
		return fmt.Errorf("bench status: complete: %w", err)
	}
	return nil
}

// spread is the i-th of n equal steps over d (in floating point:
// time.Duration(i)*d overflows int64 beyond about 100,000 steps of a day).
func spread(d time.Duration, i, n int) time.Duration {
	return time.Duration(float64(d) * float64(i) / float64(n))
}

// statusTime times cfg.Builds reports and why answers over the loaded
// fleet at now.
func statusTime(ctx context.Context, st store.Store, cfg StatusConfig, res *StatusResult, now time.Time, workers []uuid.UUID, runningTask uuid.UUID, progress func(string, ...any)) (*StatusResult, error) {

	ocfg := config.Default()
	ocfg.Pools = map[string]*config.PoolConfig{statusPool: {Provider: "sim", Max: cfg.Workers, Concurrency: 1,
		Candidates: []config.CandidateConfig{{GPU: "bench-gpu", Regions: []string{"local"}}}}}
	ocfg.Tasks.OwnerLimit = 0
	progress("timing %d status reports…", cfg.Builds)
	time1 := func(fn func() error) (time.Duration, error) {
		t0 := cfg.Now()
		err := fn()
		return cfg.Now().Sub(t0), err
	}
	var whyTask, whyWorker, whyPool, cpu []time.Duration
	for range cfg.Builds {
		var rep *status.Report
		cpu0 := ProcessCPU()
		d, err := time1(func() (err error) { rep, err = status.Build(ctx, st, ocfg, now); return err })
		if err != nil {
			return nil, fmt.Errorf("bench status: build: %w", err)
		}
		res.Builds = append(res.Builds, d)
		cpu = append(cpu, ProcessCPU()-cpu0)
		res.Verdict = rep.Verdict
		for _, c := range []struct {
			kind status.WhyKind
			id   string
			out  *[]time.Duration
		}{{status.WhyTask, runningTask.String(), &whyTask}, {status.WhyWorker, workers[len(workers)/2].String(), &whyWorker}, {status.WhyPool, statusPool, &whyPool}} {
			d, err := time1(func() error { _, err := status.Why(ctx, st, ocfg, c.kind, c.id, now); return err })
			if err != nil {
				return nil, fmt.Errorf("bench status: why %s: %w", c.kind, err)
			}
			*c.out = append(*c.out, d)
		}
	}
	res.BuildP50, res.BuildMax = tickPercentile(res.Builds, 50), slices.Max(res.Builds)
	res.BuildCPUP50 = tickPercentile(cpu, 50)
	// Then the same reports again through a store that times each read,
	// apart so the timing does not weigh on the figures above.
	steps := newStepStore(st, cfg.Now)
	for range min(cfg.Builds, 10) {
		if _, err := status.Build(ctx, steps, ocfg, now); err != nil {
			return nil, fmt.Errorf("bench status: build: %w", err)
		}
	}
	res.Steps = steps.steps()
	res.WhyTaskP50, res.WhyWorkerP50, res.WhyPoolP50 = tickPercentile(whyTask, 50), tickPercentile(whyWorker, 50), tickPercentile(whyPool, 50)
	return res, nil
}
