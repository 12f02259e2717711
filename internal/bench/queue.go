// Package bench holds Drover's benchmarks behind `drover bench …`: each
// runs a fixed workload against a real store (or server) and reports
// throughput and latency percentiles. Commands only parse flags and print.
package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
)

// QueueConfig is the workload of the queue benchmark.
type QueueConfig struct {
	// Tasks is how many no-op tasks are pre-loaded and then worked (10,000).
	Tasks int
	// Claimers is the number of concurrent claim/complete loops, each acting
	// as one registered worker in state ready (8).
	Claimers int
	// Batch is the most tasks one claim asks for; each claimer completes
	// what it claimed with one TaskCompleteMany (1).
	Batch int
	// Owners spreads the tasks over this many owners, round robin (1).
	Owners int
	// OwnerLimit is the per-owner running limit passed to claims; 0 means
	// unlimited, which isolates raw claim throughput.
	OwnerLimit int
	// Pool is the pool the tasks and workers use; default a fresh
	// "bench-<random>" pool so that a shared database's other tasks are
	// never claimed and the verification counts only this run.
	Pool string
	// Via is the path the claimers take: "store" (default) calls the
	// store's TaskClaim and TaskComplete directly, one claimer's call per
	// statement; "queue" goes through package queue as the API does: claims
	// through a queue.ClaimDispatcher (the claims waiting at the same time
	// share one statement) and completions through Service.CompleteMany
	// (group commit), which is the path River's benchmark compares with.
	Via string
	// Clock supplies the times passed to the store (default SystemClock).
	Clock core.Clock
	// Now measures latencies and elapsed time (default time.Now).
	Now func() time.Time
}

// QueueResult is what one run measured.
type QueueResult struct {
	Backend  string
	Via      string
	Tasks    int
	Claimers int
	Batch    int
	Owners   int
	// Load is the time taken to pre-load the tasks (batched inserts).
	Load time.Duration
	// Elapsed is the time from the first claim to the last completion.
	Elapsed time.Duration
	// TasksPerSec is Tasks / Elapsed: claimed and completed.
	TasksPerSec float64
	// ClaimCalls counts TaskClaim calls; EmptyClaims those that got nothing.
	ClaimCalls  int
	EmptyClaims int
	// Latency percentiles of TaskClaim calls that returned tasks, and of
	// TaskCompleteMany calls.
	ClaimP50, ClaimP99       time.Duration
	CompleteP50, CompleteP99 time.Duration
}

// Print writes the result as a short human-readable report.
func (r *QueueResult) Print(w io.Writer) {
	fmt.Fprintf(w, "backend %s via %s: %d tasks, %d claimers, batch %d, %d owners\n", r.Backend, r.Via, r.Tasks, r.Claimers, r.Batch, r.Owners)
	fmt.Fprintf(w, "pre-load:  %s (%.0f tasks/s)\n", r.Load.Round(time.Millisecond), float64(r.Tasks)/r.Load.Seconds())
	fmt.Fprintf(w, "worked:    %s, %.0f tasks/s (claim + complete)\n", r.Elapsed.Round(time.Millisecond), r.TasksPerSec)
	fmt.Fprintf(w, "claim:     p50 %s  p99 %s  (%d calls, %d empty)\n", fmtDur(r.ClaimP50), fmtDur(r.ClaimP99), r.ClaimCalls, r.EmptyClaims)
	fmt.Fprintf(w, "complete:  p50 %s  p99 %s\n", fmtDur(r.CompleteP50), fmtDur(r.CompleteP99))
	fmt.Fprintf(w, "verified:  every task succeeded exactly once\n")
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// insertBatch is the number of tasks per TaskInsertMany while pre-loading.
const insertBatch = 1000

// RunQueue runs the queue benchmark on st: it pre-loads cfg.Tasks tasks,
// registers cfg.Claimers workers in state ready, then runs the claimers,
// each claiming up to cfg.Batch tasks and completing them at once, until
// every task is done. It then verifies that every task was claimed exactly
// once and ended succeeded; any other outcome is an error.
func RunQueue(ctx context.Context, st store.Store, cfg QueueConfig) (*QueueResult, error) {
	cfg.Tasks = cmp.Or(cfg.Tasks, 10000)
	cfg.Claimers = cmp.Or(cfg.Claimers, 8)
	cfg.Batch = cmp.Or(cfg.Batch, 1)
	cfg.Owners = cmp.Or(cfg.Owners, 1)
	if cfg.Pool == "" {
		cfg.Pool = "bench-" + uuid.NewString()[:8]
	}
	if cfg.Clock == nil {
		cfg.Clock = core.SystemClock{}
	}
	cfg.Via = cmp.Or(cfg.Via, "store")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.Tasks < 0:
		return nil, core.Invalid("tasks", "must be positive")
	case cfg.Claimers < 0 || cfg.Claimers > 10000:
		return nil, core.Invalid("claimers", "must be between 1 and 10000")
	case cfg.Batch < 0 || cfg.Batch > 1000:
		return nil, core.Invalid("batch", "must be between 1 and 1000")
	case cfg.Owners < 0:
		return nil, core.Invalid("owners", "must be positive")
	case cfg.OwnerLimit < 0:
		return nil, core.Invalid("owner_limit", "must be 0 (unlimited) or positive")
	case cfg.Via != "store" && cfg.Via != "queue":
		return nil, core.Invalid("via", "must be store or queue, got %q", cfg.Via)
	}

	before, err := st.TaskCountByState(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench queue: count tasks: %w", err)
	}
	res := &QueueResult{Backend: st.Backend(), Via: cfg.Via, Tasks: cfg.Tasks, Claimers: cfg.Claimers, Batch: cfg.Batch, Owners: cfg.Owners}

	start := cfg.Now()
	ids, err := preload(ctx, st, cfg)
	if err != nil {
		return nil, err
	}
	res.Load = cfg.Now().Sub(start)
	// Measure the steady state a running server has, where autovacuum keeps
	// planner statistics: a freshly bulk-loaded table has none.
	if err := vacuumAnalyze(ctx, st, func(string, ...any) {}); err != nil {
		return nil, err
	}

	workers := make([]uuid.UUID, cfg.Claimers)
	now := cfg.Clock.Now()
	for i := range workers {
		workers[i] = uuid.New()
		ready := now
		if err := st.WorkerInsert(ctx, &core.Worker{
			ID: workers[i], Pool: cfg.Pool, Provider: "bench", Placement: cfg.Pool + "/bench/local",
			State: core.WorkerReady, Concurrency: cfg.Batch, CreatedAt: now, StateChangedAt: now, ReadyAt: &ready,
		}); err != nil {
			return nil, fmt.Errorf("bench queue: register worker %d: %w", i, err)
		}
	}

	claim, complete, stop := queuePath(ctx, st, cfg)
	defer stop()

	type claimerStats struct {
		claimed               []uuid.UUID
		claimLat, completeLat []time.Duration
		calls, empty          int
	}
	stats := make([]claimerStats, cfg.Claimers)
	var claimed atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	start = cfg.Now()
	for i := range workers {
		g.Go(func() error {
			s := &stats[i]
			for claimed.Load() < int64(cfg.Tasks) {
				t0 := cfg.Now()
				tasks, err := claim(gctx, workers[i])
				t1 := cfg.Now()
				s.calls++
				if err != nil {
					return fmt.Errorf("bench queue: claimer %d: claim: %w", i, err)
				}
				if len(tasks) == 0 {
					s.empty++
					continue
				}
				s.claimLat = append(s.claimLat, t1.Sub(t0))
				claimed.Add(int64(len(tasks)))
				items := make([]store.TaskCompletion, len(tasks))
				for j, t := range tasks {
					if t.LeaseToken == nil {
						return fmt.Errorf("bench queue: claimer %d: task %s claimed without a lease token", i, t.ID)
					}
					items[j] = store.TaskCompletion{Lease: core.Lease{TaskID: t.ID, Token: *t.LeaseToken}, Result: json.RawMessage(`{}`)}
					s.claimed = append(s.claimed, t.ID)
				}
				t2 := cfg.Now()
				lost, err := complete(gctx, workers[i], items)
				s.completeLat = append(s.completeLat, cfg.Now().Sub(t2))
				if err != nil {
					return fmt.Errorf("bench queue: claimer %d: complete: %w", i, err)
				}
				if len(lost) > 0 {
					return fmt.Errorf("bench queue: claimer %d: %d of %d completions lost their lease (first %s)", i, len(lost), len(items), lost[0].TaskID)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	res.Elapsed = cfg.Now().Sub(start)
	res.TasksPerSec = float64(cfg.Tasks) / res.Elapsed.Seconds()

	var claimLat, completeLat []time.Duration
	seen := make(map[uuid.UUID]int, cfg.Tasks)
	for _, s := range stats {
		claimLat = append(claimLat, s.claimLat...)
		completeLat = append(completeLat, s.completeLat...)
		res.ClaimCalls += s.calls
		res.EmptyClaims += s.empty
		for _, id := range s.claimed {
			seen[id]++
		}
	}
	res.ClaimP50, res.ClaimP99 = percentile(claimLat, 50), percentile(claimLat, 99)
	res.CompleteP50, res.CompleteP99 = percentile(completeLat, 50), percentile(completeLat, 99)

	if err := verify(ctx, st, cfg, ids, seen, before); err != nil {
		return res, err
	}
	return res, nil
}

type (
	claimFunc    func(ctx context.Context, worker uuid.UUID) ([]*core.Task, error)
	completeFunc func(ctx context.Context, worker uuid.UUID, items []store.TaskCompletion) ([]core.Lease, error)
)

// queuePath returns how the claimers claim and complete (cfg.Via) and a
// function that stops what it started.
func queuePath(ctx context.Context, st store.Store, cfg QueueConfig) (claimFunc, completeFunc, func()) {
	if cfg.Via == "store" {
		claim := func(ctx context.Context, worker uuid.UUID) ([]*core.Task, error) {
			got, err := st.TaskClaim(ctx, []*store.TaskClaimParams{{
				Now: cfg.Clock.Now(), WorkerID: worker, Pool: cfg.Pool, Max: cfg.Batch,
				LeaseDuration: time.Hour, OwnerLimit: cfg.OwnerLimit,
			}})
			if err != nil {
				return nil, err
			}
			return got[0], nil
		}
		complete := func(ctx context.Context, worker uuid.UUID, items []store.TaskCompletion) ([]core.Lease, error) {
			lost, err := st.TaskComplete(ctx, []*store.TaskCompleteParams{{Now: cfg.Clock.Now(), WorkerID: worker, Items: items}})
			if err != nil {
				return nil, err
			}
			return lost[0], nil
		}
		return claim, complete, func() {}
	}
	q := queue.New(st, cfg.Clock, queue.Config{LeaseDuration: time.Hour, OwnerLimit: cfg.OwnerLimit}, nil)
	d := queue.NewClaimDispatcher(q, time.Second, nopGauge{}, nil)
	dctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(dctx)
	}()
	claim := func(ctx context.Context, worker uuid.UUID) ([]*core.Task, error) {
		return d.Claim(ctx, worker, cfg.Batch, 0, nil)
	}
	return claim, q.CompleteMany, func() {
		cancel()
		<-done
	}
}

// nopGauge is the dispatcher's parked-claims gauge when nobody reads it.
type nopGauge struct{}

func (nopGauge) Add(float64) {}
func (nopGauge) Sub(float64) {}
func (nopGauge) Dec()        {}

// preload inserts the tasks in batches and returns their ids.
func preload(ctx context.Context, st store.Store, cfg QueueConfig) ([]uuid.UUID, error) {
	ids := make([]uuid.UUID, 0, cfg.Tasks)
	for off := 0; off < cfg.Tasks; off += insertBatch {
		n := min(insertBatch, cfg.Tasks-off)
		now := cfg.Clock.Now()
		batch := make([]*core.Task, n)
		for j := range batch {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, fmt.Errorf("bench queue: task id: %w", err)
			}
			batch[j] = &core.Task{
				ID: id, Type: "bench.noop", Params: json.RawMessage(`{}`),
				Owner: fmt.Sprintf("bench-%d", (off+j)%cfg.Owners), Pool: cfg.Pool,
				MaxAttempts: core.DefaultMaxAttempts, MaxLost: core.DefaultMaxLost, Timeout: time.Hour,
				State: core.TaskQueued, CreatedAt: now, RunAfter: now, UpdatedAt: now,
			}
			ids = append(ids, id)
		}
		if _, err := st.TaskInsertMany(ctx, &store.TaskInsertManyParams{Now: now, Tasks: batch}); err != nil {
			return nil, fmt.Errorf("bench queue: pre-load tasks %d-%d: %w", off, off+n-1, err)
		}
	}
	return ids, nil
}

// verify checks that each pre-loaded task was claimed exactly once and that
// the store now holds them all as succeeded.
func verify(ctx context.Context, st store.Store, cfg QueueConfig, ids []uuid.UUID, seen map[uuid.UUID]int, before map[core.TaskState]int) error {
	var errs []error
	if len(seen) != len(ids) {
		errs = append(errs, fmt.Errorf("%d distinct tasks claimed, want %d", len(seen), len(ids)))
	}
	for _, id := range ids {
		if n := seen[id]; n != 1 {
			errs = append(errs, fmt.Errorf("task %s claimed %d times, want exactly once", id, n))
			if len(errs) > 10 {
				break
			}
		}
	}
	after, err := st.TaskCountByState(ctx)
	if err != nil {
		return fmt.Errorf("bench queue: verify: count tasks: %w", err)
	}
	if got := after[core.TaskSucceeded] - before[core.TaskSucceeded]; got != len(ids) {
		errs = append(errs, fmt.Errorf("%d tasks became succeeded, want %d", got, len(ids)))
	}
	demand, err := st.TaskDemand(ctx, &store.TaskDemandParams{Now: cfg.Clock.Now()})
	if err != nil {
		return fmt.Errorf("bench queue: verify: demand: %w", err)
	}
	if d := demand[cfg.Pool]; d.Queued != 0 || d.Running != 0 {
		errs = append(errs, fmt.Errorf("pool %s still has %d queued and %d running tasks", cfg.Pool, d.Queued, d.Running))
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench queue: verification failed: %w", errors.Join(errs...))
	}
	return nil
}

// percentile returns the p-th percentile (nearest rank) of ds; it sorts ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := (p*len(ds) + 99) / 100 // ceil(p/100 · n)
	return ds[max(rank, 1)-1]
}
