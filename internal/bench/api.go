package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/droverhq/drover/internal/api"
	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
)

// APIConfig is the workload of the API benchmark.
type APIConfig struct {
	// Agents is the number of simulated agents, each a registered worker
	// talking real HTTP to the in-process server (256).
	Agents int
	// Tasks is the number of no-op tasks of the claim+complete phase
	// (20,000).
	Tasks int
	// Batch is how many tasks an agent claims at once in the throughput
	// phase (an agent with that many slots); above 1 it completes them with
	// one batched completion (1).
	Batch int
	// HeartbeatFor is how long the heartbeat phase runs (5s).
	HeartbeatFor time.Duration
	// HeartbeatInFlight is the number of heartbeat loops per agent (8). A
	// heartbeat waits for its group commit, so one loop per agent measures
	// latency, not capacity: Agents×HeartbeatInFlight loops stand in for
	// that many agents beating at once.
	HeartbeatInFlight int
	// Samples is the number of submit→start latency samples (200).
	Samples int
	// Pool is the pool used; default a fresh "bench-api-<random>" pool so a
	// shared database's other work is never touched.
	Pool string
	// Logger receives the server's logs (default: discarded).
	Logger *slog.Logger
	// MemProfile, when set, is the prefix of the allocation profiles
	// written at the end of each phase (MemProfile+".load", ".claim",
	// ".heartbeat", ".start"): each is cumulative, so one phase's
	// allocations are its profile with the previous one as the base
	// (go tool pprof -sample_index=alloc_space -base p.load p.claim).
	MemProfile string
}

// APIResult is what one run measured.
type APIResult struct {
	Backend string
	Agents  int
	Tasks   int
	Batch   int
	// SubmitPerSec is the rate of the batch submits (1,000 per request) that
	// pre-loaded the tasks.
	SubmitPerSec float64
	// Elapsed and TasksPerSec: the claim+complete phase, every agent looping
	// over HTTP on claims that carry the completions of the tasks the
	// previous claim granted (as the real agent does). ClaimP50/P99 time
	// the claims that granted tasks, CompleteP50/P99 those that carried
	// completions (most do both).
	Elapsed                  time.Duration
	TasksPerSec              float64
	ClaimP50, ClaimP99       time.Duration
	CompleteP50, CompleteP99 time.Duration
	// CPUPerTask is this process's CPU time (client and server halves,
	// SQLite included; not PostgreSQL's) per task of the phase.
	CPUPerTask time.Duration
	// AllocPerTask is this process's heap allocation (client and server
	// halves) per task of the claim+complete phase.
	AllocPerTask allocs
	// Heartbeats in the heartbeat phase, each agent holding one lease and
	// beating back to back.
	Heartbeats       int
	HeartbeatLoops   int
	HeartbeatsPerSec float64
	HeartbeatP50     time.Duration
	HeartbeatP99     time.Duration
	// Submit→start latency: from just before a single submit to the moment a
	// parked (long-polling) idle agent has the task in hand.
	Samples                      int
	StartP50, StartP99, StartMax time.Duration
	// AllocPerSample is this process's heap allocation per submit→start
	// sample (the submit, the pass over the parked claims it wakes, the
	// started agent's completion and its next claim).
	AllocPerSample allocs
}

// allocs is an amount of heap allocation: bytes and objects.
type allocs struct {
	Bytes, Objects float64
}

func (a allocs) String() string {
	return fmt.Sprintf("%.1f KB in %.0f objects", a.Bytes/1000, a.Objects)
}

// allocMeter reads the process's cumulative heap allocation.
type allocMeter struct{ bytes, objects uint64 }

func readAllocs() allocMeter {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return allocMeter{bytes: m.TotalAlloc, objects: m.Mallocs}
}

// per returns the allocation since m divided over n.
func (m allocMeter) per(n int) allocs {
	now := readAllocs()
	return allocs{Bytes: float64(now.bytes-m.bytes) / float64(n), Objects: float64(now.objects-m.objects) / float64(n)}
}

// writeMemProfile writes the cumulative allocation profile to
// prefix+"."+phase when prefix is set.
func writeMemProfile(prefix, phase string) error {
	if prefix == "" {
		return nil
	}
	path := prefix + "." + phase
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench api: memory profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("bench api: write memory profile %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench api: write memory profile %s: %w", path, err)
	}
	return nil
}

// Print writes the result as a short report.
func (r *APIResult) Print(w io.Writer) {
	fmt.Fprintf(w, "backend %s: %d agents over HTTP (loopback), %d tasks\n", r.Backend, r.Agents, r.Tasks)
	fmt.Fprintf(w, "submit:        %.0f tasks/s (batches of %d)\n", r.SubmitPerSec, wire.MaxBatchTasks)
	fmt.Fprintf(w, "claim+complete: %.0f tasks/s (batch %d, completions carried by the next claim) in %s; claim p50 %s p99 %s; carrying claim p50 %s p99 %s\n",
		r.TasksPerSec, r.Batch, r.Elapsed.Round(time.Millisecond), fmtDur(r.ClaimP50), fmtDur(r.ClaimP99), fmtDur(r.CompleteP50), fmtDur(r.CompleteP99))
	fmt.Fprintf(w, "               process CPU %.0fµs per task (client and server; not the PostgreSQL server's); allocated %s per task\n", float64(r.CPUPerTask)/float64(time.Microsecond), r.AllocPerTask)
	fmt.Fprintf(w, "heartbeats:    %.0f/s (%d from %d loops, each holding a lease), p50 %s p99 %s\n",
		r.HeartbeatsPerSec, r.Heartbeats, r.HeartbeatLoops, fmtDur(r.HeartbeatP50), fmtDur(r.HeartbeatP99))
	fmt.Fprintf(w, "submit→start:  p50 %s p99 %s max %s over %d samples (idle agents long-polling)\n",
		fmtDur(r.StartP50), fmtDur(r.StartP99), fmtDur(r.StartMax), r.Samples)
	fmt.Fprintf(w, "               allocated %s per sample (client and server)\n", r.AllocPerSample)
	fmt.Fprintf(w, "verified:      every task succeeded exactly once\n")
}

type benchAgent struct {
	id uuid.UUID
	c  *client.Client
}

// RunAPI runs the API benchmark against st: it starts the API in-process on
// a loopback port, registers cfg.Agents workers and drives them over real
// HTTP through three phases (claim+complete throughput, heartbeats,
// submit→start latency), then verifies that every task succeeded exactly
// once.
func RunAPI(ctx context.Context, st store.Store, cfg APIConfig) (*APIResult, error) {
	cfg.Agents = cmp.Or(cfg.Agents, 256)
	cfg.Tasks = cmp.Or(cfg.Tasks, 20000)
	cfg.HeartbeatFor = cmp.Or(cfg.HeartbeatFor, 5*time.Second)
	cfg.HeartbeatInFlight = cmp.Or(cfg.HeartbeatInFlight, 8)
	cfg.Batch = cmp.Or(cfg.Batch, 1)
	cfg.Samples = cmp.Or(cfg.Samples, 200)
	if cfg.Pool == "" {
		cfg.Pool = "bench-api-" + uuid.NewString()[:8]
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Agents < 1 || cfg.Agents > 10000:
		return nil, core.Invalid("agents", "must be between 1 and 10000")
	case cfg.Tasks < 1:
		return nil, core.Invalid("tasks", "must be positive")
	case cfg.Samples < 1:
		return nil, core.Invalid("samples", "must be positive")
	case cfg.Batch < 1 || cfg.Batch > wire.MaxClaim:
		return nil, core.Invalid("batch", "must be between 1 and %d", wire.MaxClaim)
	}
	clock := core.SystemClock{}
	q := queue.New(st, clock, queue.Config{OwnerLimit: 0, LeaseDuration: time.Hour}, cfg.Logger)
	q.Start(ctx)
	defer q.Stop()
	opToken := uuid.NewString()
	srv, err := api.New(api.Config{Store: st, Queue: q, Clock: clock, Logger: cfg.Logger, OperatorToken: opToken})
	if err != nil {
		return nil, fmt.Errorf("bench api: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench api: listen: %w", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer func() {
		srv.Close()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	base := "http://" + ln.Addr().String()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 4 * cfg.Agents
	tr.MaxIdleConnsPerHost = 4 * cfg.Agents
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	op, err := client.New(base, opToken, client.WithHTTPClient(hc))
	if err != nil {
		return nil, err
	}

	// Workers, each with its own token, registered over HTTP.
	agents := make([]benchAgent, cfg.Agents)
	// Leave no live bench workers behind on a shared database: an
	// orchestrator would otherwise see ready workers without instances.
	defer func() {
		cctx := context.WithoutCancel(ctx)
		term, reason := core.WorkerTerminated, "bench finished"
		for _, a := range agents {
			if a.id == uuid.Nil {
				continue
			}
			t := clock.Now()
			if _, err := st.WorkerUpdate(cctx, &store.WorkerUpdateParams{Now: t, ID: a.id, State: &term, Reason: &reason, TerminatedAt: &t}); err != nil {
				cfg.Logger.Warn("bench api: retire worker", "worker", a.id.String(), "error", err.Error())
			}
		}
	}()
	now := clock.Now()
	for i := range agents {
		id := uuid.Must(uuid.NewV7())
		tok := uuid.NewString()
		ready := now
		if err := st.WorkerInsert(ctx, &core.Worker{
			ID: id, Pool: cfg.Pool, Provider: "bench", Placement: cfg.Pool + "/bench/local", State: core.WorkerReady,
			TokenHash: api.HashToken(tok), Concurrency: 1, CreatedAt: now, StateChangedAt: now, ReadyAt: &ready,
		}); err != nil {
			return nil, fmt.Errorf("bench api: insert worker %d: %w", i, err)
		}
		agents[i].id = id
		c, err := client.New(base, tok, client.WithHTTPClient(hc))
		if err != nil {
			return nil, err
		}
		agents[i] = benchAgent{id: id, c: c}
		if _, err := c.Register(ctx, id, &wire.RegisterRequest{AgentVersion: "bench"}); err != nil {
			return nil, fmt.Errorf("bench api: register agent %d: %w", i, err)
		}
	}
	res := &APIResult{Backend: st.Backend(), Agents: cfg.Agents, Tasks: cfg.Tasks, Batch: cfg.Batch}
	seen := make(map[uuid.UUID]int, cfg.Tasks)
	var seenMu sync.Mutex
	var ids []uuid.UUID

	// Phase 1: pre-load through the batch endpoint, then claim+complete.
	t0 := time.Now()
	for off := 0; off < cfg.Tasks; off += wire.MaxBatchTasks {
		n := min(wire.MaxBatchTasks, cfg.Tasks-off)
		reqs := make([]wire.SubmitRequest, n)
		for j := range reqs {
			reqs[j] = wire.SubmitRequest{Type: "bench.noop", Pool: cfg.Pool}
		}
		out, err := op.SubmitBatch(ctx, reqs)
		if err != nil {
			return nil, fmt.Errorf("bench api: submit tasks %d-%d: %w", off, off+n-1, err)
		}
		for _, r := range out {
			ids = append(ids, r.Task.ID)
		}
	}
	res.SubmitPerSec = float64(cfg.Tasks) / time.Since(t0).Seconds()
	// Steady state: a running server's autovacuum keeps planner statistics,
	// a freshly bulk-loaded table has none.
	if err := vacuumAnalyze(ctx, st, func(string, ...any) {}); err != nil {
		return nil, err
	}

	if err := writeMemProfile(cfg.MemProfile, "load"); err != nil {
		return nil, err
	}
	var done atomic.Int64
	var lastDone atomic.Int64
	claimLat := make([][]time.Duration, cfg.Agents)
	completeLat := make([][]time.Duration, cfg.Agents)
	g, gctx := errgroup.WithContext(ctx)
	start, cpu0, mem0 := time.Now(), ProcessCPU(), readAllocs()
	var claimed atomic.Int64
	for i, a := range agents {
		g.Go(func() error {
			// Like the real agent, each simulated agent reports the tasks
			// it finished on the claim that refills its slots: one request
			// per batch in steady state.
			var pending []wire.CompleteItem
			for done.Load() < int64(cfg.Tasks) || len(pending) > 0 {
				wait := time.Second
				if len(pending) > 0 && claimed.Load() >= int64(cfg.Tasks-cfg.Agents*cfg.Batch) {
					// Near the end a claim may find nothing and park with
					// the completions it carries already committed: the
					// phase would seem a long poll longer than it is.
					wait = 0
				}
				c0 := time.Now()
				tasks, lost, err := a.c.ClaimComplete(gctx, a.id, cfg.Batch, wait, pending)
				if err == nil && len(lost) > 0 {
					err = fmt.Errorf("%d of %d completions lost their lease", len(lost), len(pending))
				}
				if err != nil {
					return fmt.Errorf("agent %d: %w", i, err)
				}
				c1 := time.Now()
				if len(pending) > 0 {
					completeLat[i] = append(completeLat[i], c1.Sub(c0))
					done.Add(int64(len(pending)))
					lastDone.Store(int64(c1.Sub(start)))
					pending = pending[:0]
				}
				if len(tasks) == 0 {
					continue
				}
				claimed.Add(int64(len(tasks)))
				claimLat[i] = append(claimLat[i], c1.Sub(c0))
				seenMu.Lock()
				for _, t := range tasks {
					seen[t.ID]++
				}
				seenMu.Unlock()
				for _, t := range tasks {
					pending = append(pending, wire.CompleteItem{TaskID: t.ID, LeaseToken: t.LeaseToken, Result: json.RawMessage(`{}`)})
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("bench api: claim+complete: %w", err)
	}
	res.Elapsed = time.Duration(lastDone.Load())
	res.CPUPerTask = (ProcessCPU() - cpu0) / time.Duration(cfg.Tasks)
	res.AllocPerTask = mem0.per(cfg.Tasks)
	if err := writeMemProfile(cfg.MemProfile, "claim"); err != nil {
		return nil, err
	}
	res.TasksPerSec = float64(cfg.Tasks) / res.Elapsed.Seconds()
	res.ClaimP50, res.ClaimP99 = percentile(flatten(claimLat), 50), percentile(flatten(claimLat), 99)
	res.CompleteP50, res.CompleteP99 = percentile(flatten(completeLat), 50), percentile(flatten(completeLat), 99)

	// Phase 2: every agent holds one lease and heartbeats back to back.
	hold := make([]wire.ClaimedTask, cfg.Agents)
	reqs := make([]wire.SubmitRequest, cfg.Agents)
	for j := range reqs {
		reqs[j] = wire.SubmitRequest{Type: "bench.hold", Pool: cfg.Pool}
	}
	for off := 0; off < len(reqs); off += wire.MaxBatchTasks {
		out, err := op.SubmitBatch(ctx, reqs[off:min(off+wire.MaxBatchTasks, len(reqs))])
		if err != nil {
			return nil, fmt.Errorf("bench api: submit hold tasks: %w", err)
		}
		for _, r := range out {
			ids = append(ids, r.Task.ID)
		}
	}
	for i, a := range agents {
		tasks, err := a.c.Claim(ctx, a.id, 1, 5*time.Second)
		if err != nil || len(tasks) != 1 {
			return nil, fmt.Errorf("bench api: agent %d claims its held task: got %d tasks, %v", i, len(tasks), err)
		}
		hold[i] = tasks[0]
	}
	hbLat := make([][]time.Duration, cfg.Agents*cfg.HeartbeatInFlight)
	hctx, cancel := context.WithTimeout(ctx, cfg.HeartbeatFor)
	g, gctx = errgroup.WithContext(hctx)
	hbStart := time.Now()
	for k := range cfg.Agents * cfg.HeartbeatInFlight {
		i, a := k%cfg.Agents, agents[k%cfg.Agents]
		g.Go(func() error {
			req := &wire.HeartbeatRequest{Leases: []wire.Lease{hold[i].Lease()}, Metrics: json.RawMessage(`{"gpu_util":97}`)}
			for gctx.Err() == nil {
				h0 := time.Now()
				reply, err := a.c.Heartbeat(gctx, a.id, req)
				if err != nil {
					if gctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("agent %d heartbeat: %w", i, err)
				}
				if len(reply.LostLeases) > 0 || reply.Drain || reply.Stop {
					return fmt.Errorf("agent %d heartbeat: unexpected reply %+v", i, reply)
				}
				hbLat[k] = append(hbLat[k], time.Since(h0))
			}
			return nil
		})
	}
	err = g.Wait()
	hbElapsed := time.Since(hbStart)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bench api: heartbeats: %w", err)
	}
	all := flatten(hbLat)
	res.Heartbeats = len(all)
	res.HeartbeatLoops = cfg.Agents * cfg.HeartbeatInFlight
	res.HeartbeatsPerSec = float64(len(all)) / hbElapsed.Seconds()
	res.HeartbeatP50, res.HeartbeatP99 = percentile(all, 50), percentile(all, 99)
	for i, a := range agents {
		if err := a.c.Complete(ctx, a.id, hold[i].Lease(), nil); err != nil {
			return nil, fmt.Errorf("bench api: agent %d completes its held task: %w", i, err)
		}
		seen[hold[i].ID]++
	}

	if err := writeMemProfile(cfg.MemProfile, "heartbeat"); err != nil {
		return nil, err
	}

	// Phase 3: every agent parks in a long-poll claim; submit one task at a
	// time and time it until an agent has it.
	type started struct {
		id uuid.UUID
		at time.Time
	}
	startedCh := make(chan started, cfg.Agents)
	lctx, lcancel := context.WithCancel(ctx)
	g, gctx = errgroup.WithContext(lctx)
	for i, a := range agents {
		g.Go(func() error {
			for gctx.Err() == nil {
				tasks, err := a.c.Claim(gctx, a.id, 1, wire.MaxClaimWait)
				if err != nil {
					if gctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("agent %d: %w", i, err)
				}
				for _, t := range tasks {
					startedCh <- started{id: t.ID, at: time.Now()}
					if err := a.c.Complete(gctx, a.id, t.Lease(), nil); err != nil {
						return fmt.Errorf("agent %d: %w", i, err)
					}
				}
			}
			return nil
		})
	}
	// Let the agents park before the first sample.
	waitParked(lctx, srv, cfg.Agents)
	lat := make([]time.Duration, 0, cfg.Samples)
	mem0 = readAllocs()
	var sampleErr error
	for range cfg.Samples {
		s0 := time.Now()
		out, err := op.Submit(ctx, &wire.SubmitRequest{Type: "bench.latency", Pool: cfg.Pool})
		if err != nil {
			sampleErr = fmt.Errorf("bench api: latency submit: %w", err)
			break
		}
		ids = append(ids, out.Task.ID)
		select {
		case st := <-startedCh:
			if st.id != out.Task.ID {
				sampleErr = fmt.Errorf("bench api: latency: agent started %s, want %s", st.id, out.Task.ID)
			}
			lat = append(lat, st.at.Sub(s0))
			seen[st.id]++
		case <-time.After(wire.MaxClaimWait):
			sampleErr = errors.New("bench api: latency: no agent started the task within 30s")
		}
		if sampleErr != nil {
			break
		}
	}
	// Wait for the last completion to land before stopping the agents.
	waitParked(lctx, srv, cfg.Agents)
	res.AllocPerSample = mem0.per(max(len(lat), 1))
	if err := writeMemProfile(cfg.MemProfile, "start"); err != nil && sampleErr == nil {
		sampleErr = err
	}
	lcancel()
	if err := g.Wait(); err != nil && sampleErr == nil {
		sampleErr = err
	}
	if sampleErr != nil {
		return nil, sampleErr
	}
	res.Samples = len(lat)
	res.StartP50, res.StartP99 = percentile(lat, 50), percentile(lat, 99)
	res.StartMax = lat[len(lat)-1]

	if err := verifyAPI(ctx, st, cfg.Pool, ids, seen); err != nil {
		return res, err
	}
	return res, nil
}

// waitParked waits (without sleeping: it watches the server's waiter gauge
// through its registry, yielding between looks) until n claims are parked,
// or ctx ends, or 30 s pass.
func waitParked(ctx context.Context, srv *api.Server, n int) {
	deadline := time.Now().Add(wire.MaxClaimWait)
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for time.Now().Before(deadline) {
		mfs, err := srv.Registry().Gather()
		if err != nil {
			return
		}
		for _, mf := range mfs {
			if mf.GetName() == "drover_api_claim_waiters" && len(mf.GetMetric()) > 0 && int(mf.GetMetric()[0].GetGauge().GetValue()) >= n {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func verifyAPI(ctx context.Context, st store.Store, pool string, ids []uuid.UUID, seen map[uuid.UUID]int) error {
	var errs []error
	for _, id := range ids {
		if n := seen[id]; n != 1 {
			errs = append(errs, fmt.Errorf("task %s handed out %d times, want exactly once", id, n))
			if len(errs) > 10 {
				break
			}
		}
	}
	demand, err := st.TaskDemand(ctx, &store.TaskDemandParams{Now: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("bench api: verify: demand: %w", err)
	}
	if d := demand[pool]; d.Queued != 0 || d.Running != 0 {
		errs = append(errs, fmt.Errorf("pool %s still has %d queued and %d running tasks", pool, d.Queued, d.Running))
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench api: verification failed: %w", errors.Join(errs...))
	}
	return nil
}

func flatten(xs [][]time.Duration) []time.Duration {
	var out []time.Duration
	for _, x := range xs {
		out = append(out, x...)
	}
	return out
}
