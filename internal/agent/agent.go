package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// Version is the agent version reported at registration.
var Version = "dev"

// API is the part of the server's /v1 worker API the agent uses.
// *client.Client implements it.
type API interface {
	Register(ctx context.Context, id uuid.UUID, req *wire.RegisterRequest) (*wire.RegisterResponse, error)
	Heartbeat(ctx context.Context, id uuid.UUID, req *wire.HeartbeatRequest) (*wire.HeartbeatResponse, error)
	Claim(ctx context.Context, id uuid.UUID, max int, wait time.Duration) ([]wire.ClaimedTask, error)
	Complete(ctx context.Context, workerID uuid.UUID, lease wire.Lease, result json.RawMessage) error
	Fail(ctx context.Context, workerID uuid.UUID, lease wire.Lease, msg string, retryable bool) (*wire.Task, error)
	Logs(ctx context.Context, id uuid.UUID, lines []wire.LogLineIn) error
}

var _ API = (*client.Client)(nil)

// Options configure an Agent.
type Options struct {
	// WorkerID is the worker this agent runs as (DROVER_WORKER_ID).
	WorkerID uuid.UUID
	// InstanceID is the provider's instance id, if the agent knows it.
	InstanceID string
	// Concurrency overrides the pool's per-worker concurrency when > 0.
	Concurrency int
	// Runner runs the handler.
	Runner *Runner
	// GPU probes the GPUs (default NvidiaSMI{}).
	GPU GPUProbe
	// Logger receives the agent's own logs.
	Logger *slog.Logger
	// Clock stamps log lines (default core.SystemClock).
	Clock core.Clock
	// RetryMin and RetryMax bound the backoff between attempts to reach an
	// unreachable server (100ms, 5s).
	RetryMin, RetryMax time.Duration
	// ReportTimeout bounds the one report attempt made for a finished
	// handler while stopping (5s).
	ReportTimeout time.Duration
	// ServerLostTimeout is the dead man's switch: after this long without
	// any answer from the server the agent kills its handlers, reports
	// nothing and Run returns ErrServerLost. 0 takes the server's
	// server_lost_timeout_s from the register reply, else ServerLostFactor
	// × its heartbeat_timeout (DefaultServerLostTimeout until registered).
	ServerLostTimeout time.Duration
	// ServerLostCheck is how often the switch is checked (1s).
	ServerLostCheck time.Duration
}

// Agent is the worker agent: it registers, heartbeats, claims tasks, runs
// one handler process per task and reports the outcomes. See doc.go.
type Agent struct {
	api API
	opt Options
	log *slog.Logger

	mu       sync.Mutex
	tasks    map[uuid.UUID]*runningTask
	progress map[uuid.UUID]wire.TaskProgress
	draining bool
	stopped  bool
	drainCh  chan struct{}
	stopCh   chan struct{}
	slotFree chan struct{}
	wg       sync.WaitGroup
	logs     *logShipper
	stopWhy  string

	dead       deadMan
	serverLost bool

	// Completions carried by the next claim (carry.go): carrier is nil
	// when the API cannot; noCarry is set once the server refused the
	// field; claimIdle is true while the claim loop waits for a free slot.
	carrier   CarryAPI
	carry     []*carriedCompletion
	noCarry   bool
	claimIdle bool
}

type runningTask struct {
	lease  wire.Lease
	cancel context.CancelFunc
	lost   bool
	// finished is set when the handler has exited and its outcome is being
	// reported: a heartbeat reply that calls the lease lost then only
	// means the completion landed first (or the report will hear a 409),
	// so there is nothing to kill and nothing to log.
	finished bool
}

// New returns an agent that talks to api.
func New(api API, opt Options) *Agent {
	if opt.GPU == nil {
		opt.GPU = NvidiaSMI{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Clock == nil {
		opt.Clock = core.SystemClock{}
	}
	if opt.RetryMin <= 0 {
		opt.RetryMin = 100 * time.Millisecond
	}
	if opt.RetryMax <= 0 {
		opt.RetryMax = 5 * time.Second
	}
	if opt.ReportTimeout <= 0 {
		opt.ReportTimeout = 5 * time.Second
	}
	if opt.ServerLostCheck <= 0 {
		opt.ServerLostCheck = time.Second
	}
	log := opt.Logger.With("worker", opt.WorkerID.String())
	a := &Agent{
		opt:      opt,
		log:      log,
		tasks:    map[uuid.UUID]*runningTask{},
		progress: map[uuid.UUID]wire.TaskProgress{},
		drainCh:  make(chan struct{}),
		stopCh:   make(chan struct{}),
		slotFree: make(chan struct{}, 1),
	}
	a.api = watchedAPI{API: api, a: a}
	a.carrier = carrier(api)
	a.logs = newLogShipper(a.api, opt.WorkerID, opt.Clock, log)
	return a
}

// Drain makes the agent finish the tasks it runs, claim nothing more and
// return from Run. It is what SIGTERM does. Safe to call more than once.
func (a *Agent) Drain() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.draining {
		a.draining = true
		close(a.drainCh)
	}
}

// Stop makes the agent kill its handlers (SIGTERM, then SIGKILL after the
// grace), try once to report handlers that had already finished, and return
// from Run.
func (a *Agent) Stop(why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.stopped {
		a.stopped = true
		a.stopWhy = why
		close(a.stopCh)
		if !a.draining {
			a.draining = true
			close(a.drainCh)
		}
	}
}

// Running returns the number of tasks the agent holds.
func (a *Agent) Running() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.tasks)
}

// Run registers and works until drained, stopped or ctx is cancelled. It
// returns nil after a drain or a stop command, ErrServerLost when the
// server did not answer for server_lost_timeout, and an error when it could
// not register or the server rejected the worker's credentials.
func (a *Agent) Run(ctx context.Context) error {
	// The dead man's switch runs from the start: a server that never
	// answers the registration is lost too.
	a.dead.alive(a.opt.Clock.Now())
	a.dead.setTimeout(a.serverLostTimeout(nil))
	ctx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	go a.watch(watchCtx, giveUp)

	reg, err := a.register(ctx)
	if err != nil {
		if a.isServerLost() {
			return fmt.Errorf("register worker: %w", ErrServerLost)
		}
		return err
	}
	a.dead.setTimeout(a.serverLostTimeout(reg))
	interval := reg.HeartbeatInterval.D()
	if interval <= 0 {
		interval = 5 * time.Second
	}
	conc := reg.Concurrency
	if a.opt.Concurrency > 0 {
		conc = a.opt.Concurrency
	}
	if conc <= 0 {
		conc = 1
	}
	claimWait := reg.ClaimWait.D()
	if claimWait <= 0 || claimWait > wire.MaxClaimWait {
		claimWait = wire.MaxClaimWait
	}
	a.log.Info("agent registered", "pool", reg.Pool, "concurrency", conc, "heartbeat_interval", interval.String(),
		"server_lost_timeout", a.serverLostTimeout(reg).String())

	// runCtx ends on stop or on cancellation of ctx: it kills handlers.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	go func() {
		select {
		case <-a.stopCh:
			cancelRun()
		case <-runCtx.Done():
		}
	}()
	// Heartbeats and log shipping continue until every task is reported.
	bgCtx, cancelBg := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBg()
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); a.heartbeatLoop(bgCtx, ctx, interval, reg.HeartbeatTimeout.D()) }()
	logsDone := make(chan struct{})
	go func() { defer close(logsDone); a.logs.run(bgCtx) }()

	fatal := a.claimLoop(runCtx, conc, claimWait)

	// Drain: wait for running tasks (heartbeats continue meanwhile). Stop
	// or cancellation: runCtx is done and the handlers are being killed.
	a.wg.Wait()
	cancelBg()
	<-hbDone
	<-logsDone
	if a.isServerLost() {
		return ErrServerLost
	}
	flushCtx, cancelFlush := context.WithTimeout(context.WithoutCancel(ctx), a.opt.ReportTimeout)
	_ = a.logs.flush(flushCtx)
	cancelFlush()
	if fatal != nil {
		return fatal
	}
	a.mu.Lock()
	why, stopped := a.stopWhy, a.stopped
	a.mu.Unlock()
	switch {
	case stopped:
		a.log.Info("agent stopped", "reason", why)
	case ctx.Err() != nil:
		a.log.Info("agent cancelled")
	default:
		a.log.Info("agent drained")
	}
	return nil
}

// register registers with the server, retrying while it is unreachable.
func (a *Agent) register(ctx context.Context) (*wire.RegisterResponse, error) {
	probeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	gpus, err := a.opt.GPU.Probe(probeCtx)
	cancel()
	if err != nil {
		// Register without GPUs: a pool that requires them fails the worker
		// as gpu-missing, which is what an operator needs to see.
		a.log.Warn("gpu probe failed; registering without gpus", "err", err)
		gpus = nil
	}
	req := &wire.RegisterRequest{InstanceID: a.opt.InstanceID, AgentVersion: Version, GPUs: gpus}
	for attempt := 0; ; attempt++ {
		reg, err := a.api.Register(ctx, a.opt.WorkerID, req)
		if err == nil {
			return reg, nil
		}
		if !client.IsRetryable(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("register worker: %w", err)
		}
		a.log.Warn("register failed; retrying", "err", err, "attempt", attempt+1)
		if !a.sleep(ctx, a.backoff(attempt)) {
			return nil, fmt.Errorf("register worker: %w", ctx.Err())
		}
	}
}

// claimLoop claims tasks while slots are free until drain, stop or ctx end.
// It returns a non-nil error only for a fatal rejection by the server.
func (a *Agent) claimLoop(ctx context.Context, conc int, wait time.Duration) error {
	failures := 0
	for {
		a.mu.Lock()
		draining := a.draining || ctx.Err() != nil
		// A carried completion's task is finished: its slot is free once
		// the claim carrying it commits.
		carry := a.takeCarried()
		free := conc - len(a.tasks) + len(carry)
		a.claimIdle = !draining && free <= 0
		a.mu.Unlock()
		if draining {
			settleCarried(carry, errNotCarried)
			return nil
		}
		if free <= 0 {
			select {
			case <-a.slotFree:
			case <-a.drainCh:
			case <-ctx.Done():
			}
			a.mu.Lock()
			a.claimIdle = false
			a.mu.Unlock()
			continue
		}
		// A drain cuts an in-flight long poll short so the agent exits
		// promptly. Tasks the server grants at that very instant reach no
		// one; the server sees the request gone and hands them back to the
		// queue (api: releaseUndelivered).
		claimCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-a.drainCh:
				cancel()
			case <-claimCtx.Done():
			}
		}()
		tasks, err := a.claim(claimCtx, free, wait, carry)
		cancel()
		if err != nil {
			if a.isDraining() || ctx.Err() != nil {
				return nil
			}
			if fatalStatus(err) {
				a.log.Error("server rejected the worker; stopping", "err", err)
				a.Stop("claim rejected")
				return fmt.Errorf("claim tasks: %w", err)
			}
			failures++
			a.log.Warn("claim failed; retrying", "err", err, "failures", failures)
			a.sleep(ctx, a.backoff(failures-1))
			continue
		}
		failures = 0
		for _, t := range tasks {
			a.start(ctx, t)
		}
	}
}

// start runs one claimed task in its own goroutine.
func (a *Agent) start(ctx context.Context, t wire.ClaimedTask) {
	taskCtx, cancel := context.WithCancel(ctx)
	rt := &runningTask{lease: t.Lease(), cancel: cancel}
	a.mu.Lock()
	a.tasks[t.ID] = rt
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer cancel()
		a.runTask(taskCtx, t, rt)
	}()
}

func (a *Agent) runTask(ctx context.Context, t wire.ClaimedTask, rt *runningTask) {
	id := t.ID.String()
	log := a.log.With("task", id, "type", t.Type, "attempt", t.Attempt)
	log.Info("task started")
	// A fresh output directory per attempt, removed once reported.
	outDir, derr := os.MkdirTemp(a.opt.Runner.TempDir, "drover-outputs-*")
	if derr != nil {
		log.Error("create output directory", "err", derr)
		outDir = ""
	} else {
		defer os.RemoveAll(outDir)
	}
	out := a.opt.Runner.Run(ctx, Job{
		OutputDir: outDir,
		TaskID:    id,
		Type:      t.Type,
		Attempt:   t.Attempt,
		Params:    t.Params,
		Timeout:   t.Timeout,
		Log:       func(stream, line string) { a.logs.add(id, stream, line) },
		Progress: func(f float64, msg string) {
			a.mu.Lock()
			a.progress[t.ID] = wire.TaskProgress{TaskID: t.ID, LeaseToken: rt.lease.Token, Progress: &f, Message: msg}
			a.mu.Unlock()
		},
	})
	defer a.finish(t.ID)

	a.mu.Lock()
	rt.finished = true
	lost, stopped := rt.lost, a.stopped
	a.mu.Unlock()
	if lost {
		log.Info("lease lost: handler killed, nothing reported")
		return
	}
	if out.Cancelled {
		log.Info("handler killed: agent stopping, nothing reported")
		return
	}
	if a.isServerLost() {
		log.Info("handler finished after the server was lost: nothing reported")
		return
	}
	if out.Unkillable {
		log.Error("handler did not exit after SIGKILL (stuck task)")
	}
	// Ship the task's output before its outcome, best effort.
	flushCtx, cancelFlush := context.WithTimeout(context.WithoutCancel(ctx), a.opt.ReportTimeout)
	_ = a.logs.flush(flushCtx)
	cancelFlush()

	var manifest []wire.OutputEntry
	if out.OK && outDir != "" {
		m, err := a.uploadOutputs(ctx, t, rt, outDir)
		switch {
		case err == nil:
			manifest = m
		case client.IsLeaseLost(err):
			log.Warn("lease lost while uploading outputs: nothing reported")
			return
		case ctx.Err() != nil:
			log.Info("output upload stopped: lease lost or agent stopping, nothing reported")
			return
		default:
			log.Warn("outputs failed; failing the attempt", "err", err)
			out = Outcome{Error: "outputs: " + err.Error(), Retryable: true}
		}
	}
	carry, mayHaveLanded := true, false
	report := func(rctx context.Context) error {
		if out.OK && len(manifest) == 0 && carry {
			// Once: a completion that did not go out on a claim (or
			// whose claim failed) is reported on its own below.
			carry = false
			if done := a.handOver(rt.lease, out.Result); done != nil {
				err := <-done
				if !errors.Is(err, errNotCarried) {
					return err
				}
				mayHaveLanded = errors.Is(err, errCarryUnknown)
			}
		}
		if out.OK {
			var err error
			if len(manifest) > 0 {
				err = a.outputAPI().CompleteOutputs(rctx, a.opt.WorkerID, rt.lease, out.Result, manifest)
			} else {
				err = a.api.Complete(rctx, a.opt.WorkerID, rt.lease, out.Result)
			}
			if c := client.CodeOf(err); len(manifest) > 0 && (c == wire.CodeInvalid || c == wire.CodeTooLarge) ||
				c == wire.CodeInvalid && client.FieldOf(err) == "outputs" {
				// The server refused the outputs (mismatch, missing
				// required output): the attempt fails, retryable.
				log.Warn("server rejected the outputs; failing the attempt", "err", err)
				out = Outcome{Error: "outputs rejected: " + err.Error(), Retryable: true}
				_, err = a.api.Fail(rctx, a.opt.WorkerID, rt.lease, truncateErr(out.Error), true)
			}
			return err
		}
		_, err := a.api.Fail(rctx, a.opt.WorkerID, rt.lease, truncateErr(out.Error), out.Retryable)
		return err
	}
	what := "complete"
	if !out.OK {
		what = "fail"
	}
	for attempt := 0; ; attempt++ {
		// Report with a context that survives a stop of the agent: a handler
		// that finished deserves one report attempt even while stopping.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.reportTimeout(stopped))
		err := report(rctx)
		cancel()
		switch {
		case err == nil:
			if out.OK {
				log.Info("task completed")
			} else {
				log.Info("task failed", "retryable", out.Retryable, "exit_code", out.ExitCode, "timed_out", out.TimedOut)
			}
			return
		case client.IsLeaseLost(err) && mayHaveLanded && out.OK:
			log.Info("task completed, most likely: 409 on repeating the completion its cut-short claim carried (it had landed, unless the lease was lost meanwhile)")
			return
		case client.IsLeaseLost(err):
			log.Warn("lease lost: result discarded (409 on "+what+")", "status", client.StatusOf(err))
			return
		case !client.IsRetryable(err) && out.OK:
			// The server refused the completion itself: fail the attempt
			// (counted, retried within max_attempts) rather than drop the
			// task, which the server would hand out again uncounted once
			// this agent stops reporting its lease.
			log.Error("completion rejected; failing the attempt", "err", err)
			out = Outcome{Error: "completion rejected: " + err.Error(), Retryable: true}
			what = "fail"
			continue
		case !client.IsRetryable(err):
			log.Error("report rejected; dropping task", "op", what, "err", err)
			return
		}
		a.mu.Lock()
		stopped, lost = a.stopped, rt.lost
		a.mu.Unlock()
		if stopped || lost || ctx.Err() != nil {
			log.Warn("report failed; giving up", "op", what, "err", err)
			return
		}
		log.Warn("report failed; retrying", "op", what, "err", err, "attempt", attempt+1)
		if !a.sleepUnlessStopped(a.backoff(attempt)) {
			return
		}
	}
}

func (a *Agent) reportTimeout(stopped bool) time.Duration {
	if stopped {
		return a.opt.ReportTimeout
	}
	return client.DefaultTimeout
}

// finish forgets a task and frees its slot.
func (a *Agent) finish(id uuid.UUID) {
	a.mu.Lock()
	delete(a.tasks, id)
	delete(a.progress, id)
	a.mu.Unlock()
	select {
	case a.slotFree <- struct{}{}:
	default:
	}
}

func (a *Agent) isDraining() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.draining
}
