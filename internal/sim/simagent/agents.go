// Package simagent simulates Drover agents: one per instance of the sim
// provider, they register, heartbeat, claim and finish tasks against a real
// queue, on the provider's clock. The orchestrator's tests and the simulator
// (package sim) drive them; nothing in it sleeps.
package simagent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
	psim "github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/queue"
	"github.com/google/uuid"
)

// AgentBackend is the part of *queue.Service that simulated agents use: the
// same calls a real agent makes through the HTTP API.
type AgentBackend interface {
	Register(ctx context.Context, workerID uuid.UUID, info queue.RegisterInfo) (*core.Worker, error)
	Heartbeat(ctx context.Context, workerID uuid.UUID, hb queue.HeartbeatInfo) (queue.HeartbeatReply, error)
	Claim(ctx context.Context, workerID uuid.UUID, max int) ([]*core.Task, error)
	Complete(ctx context.Context, workerID uuid.UUID, lease core.Lease, result json.RawMessage) error
	Fail(ctx context.Context, workerID uuid.UUID, lease core.Lease, msg string, retryable bool) (*core.Task, error)
}

var _ AgentBackend = (*queue.Service)(nil)

// Outcome is how a simulated task ends.
type Outcome int

// Task outcomes.
const (
	// Succeed completes the task after Duration.
	Succeed Outcome = iota
	// HandlerError fails the task (retryable unless Final) after Duration.
	HandlerError
	// Hang never reports: the task runs until its lease is lost or the
	// worker dies.
	Hang
	// KillWorker kills the agent after Duration (a poison task): it stops
	// heartbeating and reports nothing; the instance keeps running.
	KillWorker
	// VanishWorker makes the whole instance disappear after Duration.
	VanishWorker
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Succeed:
		return "succeed"
	case HandlerError:
		return "error"
	case Hang:
		return "hang"
	case KillWorker:
		return "kill"
	case VanishWorker:
		return "vanish"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// TaskBehavior scripts one simulated task run.
type TaskBehavior struct {
	Duration time.Duration
	Outcome  Outcome
	// Final makes a HandlerError non-retryable.
	Final bool
	// Result is the JSON object a succeeding task reports ({} if nil).
	Result json.RawMessage
	// Error is the message of a HandlerError ("simulated handler error").
	Error string
}

// ParamsBehavior returns a Behavior that reads the task's params
// {"sim_duration": "30s", "sim_outcome": "succeed|error|final|hang|kill|vanish"}
// and falls back to def for what is missing or unreadable.
func ParamsBehavior(def TaskBehavior) func(*core.Task) TaskBehavior {
	return func(t *core.Task) TaskBehavior {
		b := def
		var p struct {
			Duration string `json:"sim_duration"`
			Outcome  string `json:"sim_outcome"`
		}
		if len(t.Params) == 0 || json.Unmarshal(t.Params, &p) != nil {
			return b
		}
		if d, err := time.ParseDuration(p.Duration); err == nil && d >= 0 {
			b.Duration = d
		}
		switch p.Outcome {
		case "succeed":
			b.Outcome = Succeed
		case "error":
			b.Outcome = HandlerError
		case "final":
			b.Outcome, b.Final = HandlerError, true
		case "hang":
			b.Outcome = Hang
		case "kill":
			b.Outcome = KillWorker
		case "vanish":
			b.Outcome = VanishWorker
		}
		return b
	}
}

// FleetOptions configure a Fleet.
type FleetOptions struct {
	// HeartbeatInterval is how often agents beat (5s).
	HeartbeatInterval time.Duration
	// Behavior scripts each claimed task; nil uses ParamsBehavior with a
	// default of succeeding after one minute.
	Behavior func(task *core.Task) TaskBehavior
	// Concurrency is the task slots of an agent whose worker row says
	// none (1).
	Concurrency int
	// GPUs is the inventory agents report at registration; nil reports one
	// GPU named after the placement. NoGPUs reports none (gpu-missing).
	GPUs   []core.GPU
	NoGPUs bool
	// AgentVersion is reported at registration ("sim").
	AgentVersion string
	// Logger receives backend errors at debug level (discarded if nil).
	Logger *slog.Logger
}

// AgentInfo is a snapshot of one simulated agent.
type AgentInfo struct {
	InstanceID string
	WorkerID   uuid.UUID
	Registered bool
	Draining   bool
	// Stopped: the agent has exited, died or was told to stop.
	Stopped     bool
	StopReason  string
	Running     int
	Done        int
	Failed      int
	Heartbeats  int
	LastBeatAt  time.Time
	RegisterErr string
}

type simTask struct {
	task   *core.Task
	lease  core.Lease
	doneAt time.Time
	b      TaskBehavior
}

type agent struct {
	info        AgentInfo
	concurrency int
	running     map[uuid.UUID]*simTask
}

// Fleet drives one simulated agent per instance of a Provider, on the
// provider's clock. It is deterministic: agents are stepped in instance
// creation order and tasks in (due time, id) order. Step is safe for
// concurrent use but serialises.
type Fleet struct {
	p      *psim.Provider
	q      AgentBackend
	opts   FleetOptions
	logger *slog.Logger

	mu     sync.Mutex
	agents map[string]*agent
}

// NewFleet returns a fleet of agents for p's instances talking to q.
func NewFleet(p *psim.Provider, q AgentBackend, opts FleetOptions) *Fleet {
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = 5 * time.Second
	}
	if opts.Behavior == nil {
		opts.Behavior = ParamsBehavior(TaskBehavior{Duration: time.Minute})
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.AgentVersion == "" {
		opts.AgentVersion = "sim"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Fleet{p: p, q: q, opts: opts, logger: logger, agents: map[string]*agent{}}
}

// Step advances every agent to the clock's now: agents whose boot time has
// passed register (once), beat every HeartbeatInterval, finish tasks whose
// duration has passed, and claim into free slots. Agents stop when their
// instance is gone or crashed and obey Drain, Stop and Lost from heartbeat
// replies. Backend errors that a real agent would retry are retried at the
// next Step; Step returns only context errors.
func (f *Fleet) Step(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.p.Now()
	for _, id := range f.p.IDs() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f.stepAgent(ctx, id, now); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fleet) stepAgent(ctx context.Context, instanceID string, now time.Time) error {
	st := f.p.Agent(instanceID, now)
	if !st.Exists || st.WorkerID == "" {
		return nil
	}
	a := f.agents[instanceID]
	if a == nil {
		wid, err := uuid.Parse(st.WorkerID)
		if err != nil {
			return nil // not a Drover worker id: nothing runs there
		}
		a = &agent{info: AgentInfo{InstanceID: instanceID, WorkerID: wid}, running: map[uuid.UUID]*simTask{}}
		f.agents[instanceID] = a
	}
	if a.info.Stopped {
		return nil
	}
	switch {
	case st.Gone:
		a.stop("instance gone")
		return nil
	case st.Crashed:
		a.stop("agent crashed")
		return nil
	case !st.Booted:
		return nil
	}
	wid := a.info.WorkerID

	if !a.info.Registered {
		w, err := f.q.Register(ctx, wid, queue.RegisterInfo{
			InstanceID: instanceID, AgentVersion: f.opts.AgentVersion, GPUs: f.gpus(st),
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			a.info.RegisterErr = err.Error()
			f.logger.DebugContext(ctx, "sim agent register failed", slog.String("worker", wid.String()), slog.String("error", err.Error()))
			if code := core.ErrorCode(err); code != core.EINTERNAL && code != core.EUNAVAILABLE {
				a.stop("register refused: " + err.Error())
			}
			return nil
		}
		a.info.Registered = true
		a.info.LastBeatAt = now
		a.concurrency = f.opts.Concurrency
		if w != nil && w.Concurrency > 0 {
			a.concurrency = w.Concurrency
		}
	}

	// Finish tasks that are due, in a deterministic order.
	if done := f.finishDue(ctx, a, instanceID, now); done {
		return ctx.Err()
	}

	if now.Sub(a.info.LastBeatAt) >= f.opts.HeartbeatInterval {
		hb := queue.HeartbeatInfo{Leases: a.leases()}
		reply, err := f.q.Heartbeat(ctx, wid, hb)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			f.logger.DebugContext(ctx, "sim agent heartbeat failed", slog.String("worker", wid.String()), slog.String("error", err.Error()))
			if core.ErrorCode(err) == core.ENOTFOUND {
				a.stop("worker unknown to the server")
				return nil
			}
		} else {
			a.info.Heartbeats++
			a.info.LastBeatAt = now
			for _, l := range reply.Lost {
				delete(a.running, l.TaskID)
			}
			if reply.Stop {
				a.stop("told to stop")
				return nil
			}
			if reply.Drain {
				a.info.Draining = true
			}
		}
	}

	if a.info.Draining {
		if len(a.running) == 0 {
			a.stop("drained")
		}
		return nil
	}
	if free := a.concurrency - len(a.running); free > 0 {
		tasks, err := f.q.Claim(ctx, wid, free)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			f.logger.DebugContext(ctx, "sim agent claim failed", slog.String("worker", wid.String()), slog.String("error", err.Error()))
			return nil
		}
		for _, t := range tasks {
			if t.LeaseToken == nil {
				continue
			}
			b := f.opts.Behavior(t)
			a.running[t.ID] = &simTask{
				task:   t,
				lease:  core.Lease{TaskID: t.ID, Token: *t.LeaseToken},
				doneAt: now.Add(b.Duration),
				b:      b,
			}
		}
	}
	return nil
}

// finishDue reports the tasks of a that are due at now. It returns true when
// the agent died doing so.
func (f *Fleet) finishDue(ctx context.Context, a *agent, instanceID string, now time.Time) bool {
	var due []*simTask
	for _, t := range a.running {
		if t.b.Outcome != Hang && !now.Before(t.doneAt) {
			due = append(due, t)
		}
	}
	slices.SortFunc(due, func(x, y *simTask) int {
		if c := x.doneAt.Compare(y.doneAt); c != 0 {
			return c
		}
		return cmp.Compare(x.task.ID.String(), y.task.ID.String())
	})
	wid := a.info.WorkerID
	for _, t := range due {
		switch t.b.Outcome {
		case KillWorker:
			a.stop(fmt.Sprintf("killed by task %s", t.task.ID))
			return true
		case VanishWorker:
			f.p.Kill(instanceID)
			a.stop(fmt.Sprintf("instance vanished running task %s", t.task.ID))
			return true
		case HandlerError:
			msg := cmp.Or(t.b.Error, "simulated handler error")
			_, err := f.q.Fail(ctx, wid, t.lease, msg, !t.b.Final)
			if err != nil && !errors.Is(err, core.ErrLeaseLost) {
				if ctx.Err() != nil {
					return true
				}
				continue // retry at the next step, as a real agent would
			}
			a.info.Failed++
		default:
			res := t.b.Result
			if res == nil {
				res = json.RawMessage(`{}`)
			}
			err := f.q.Complete(ctx, wid, t.lease, res)
			if err != nil && !errors.Is(err, core.ErrLeaseLost) {
				if ctx.Err() != nil {
					return true
				}
				continue
			}
			a.info.Done++
		}
		delete(a.running, t.task.ID)
	}
	return false
}

func (a *agent) stop(reason string) {
	a.info.Stopped = true
	a.info.StopReason = reason
	a.running = map[uuid.UUID]*simTask{}
}

func (a *agent) leases() []core.Lease {
	out := make([]core.Lease, 0, len(a.running))
	for _, t := range a.running {
		out = append(out, t.lease)
	}
	slices.SortFunc(out, func(x, y core.Lease) int { return cmp.Compare(x.TaskID.String(), y.TaskID.String()) })
	return out
}

func (f *Fleet) gpus(st psim.AgentStatus) []core.GPU {
	if f.opts.NoGPUs {
		return nil
	}
	if f.opts.GPUs != nil {
		return slices.Clone(f.opts.GPUs)
	}
	return []core.GPU{{Index: 0, Name: "sim GPU", MemoryMiB: 24576}}
}

// Agents returns a snapshot of every agent, in instance creation order.
func (f *Fleet) Agents() []AgentInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []AgentInfo
	for _, id := range f.p.IDs() {
		if a := f.agents[id]; a != nil {
			info := a.info
			info.Running = len(a.running)
			out = append(out, info)
		}
	}
	return out
}

// Agent returns the snapshot of the agent on instanceID.
func (f *Fleet) Agent(instanceID string) (AgentInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.agents[instanceID]
	if a == nil {
		return AgentInfo{}, false
	}
	info := a.info
	info.Running = len(a.running)
	return info, true
}

// NextDue returns the earliest moment after now at which a running task of
// a live agent finishes (or kills its worker), and false when none will.
// The simulator jumps its clock to such moments.
func (f *Fleet) NextDue(now time.Time) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var next time.Time
	for _, a := range f.agents {
		if a.info.Stopped {
			continue
		}
		for _, t := range a.running {
			if t.b.Outcome == Hang || !t.doneAt.After(now) {
				continue
			}
			if next.IsZero() || t.doneAt.Before(next) {
				next = t.doneAt
			}
		}
	}
	return next, !next.IsZero()
}

// Stopped reports whether the agent on instanceID has stopped (exited,
// died or was told to stop).
func (f *Fleet) Stopped(instanceID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.agents[instanceID]
	return a != nil && a.info.Stopped
}
