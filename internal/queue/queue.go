package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"
	"unicode/utf8"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// Defaults of Config.
const (
	DefaultBackoffBase    = 10 * time.Second
	DefaultBackoffMax     = 10 * time.Minute
	DefaultHeartbeatFlush = 100 * time.Millisecond
	// MaxClaim is the most tasks one claim may ask for.
	MaxClaim = 1000
	// MaxLogLines is the most log lines one Logs call accepts.
	MaxLogLines = 10000
	// MaxLogLineBytes is the longest log line kept; longer lines are cut.
	MaxLogLineBytes = 16 << 10
	// MaxProgressMessageBytes bounds a progress message.
	MaxProgressMessageBytes = 4096
)

// ClaimRequest is one item of ClaimMany and ClaimCompleteMany.
type ClaimRequest struct {
	WorkerID uuid.UUID
	Max      int
	// Complete holds completions of the worker's held tasks that the claim
	// carries (checked by CheckCompletions); only ClaimCompleteMany reads
	// it.
	Complete []store.TaskCompletion
}

// New returns a queue over st. Zero fields of cfg take their defaults (see
// Config). Call Start to run the heartbeat group-commit flusher; without
// it every heartbeat is committed on its own.
func New(st store.Store, clock core.Clock, cfg Config, logger *slog.Logger) *Service {
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, core.DefaultMaxAttempts)
	cfg.MaxLost = cmp.Or(cfg.MaxLost, core.DefaultMaxLost)
	cfg.DefaultTimeout = cmp.Or(cfg.DefaultTimeout, core.DefaultTaskTimeout)
	cfg.QueueTTL = cmp.Or(cfg.QueueTTL, core.DefaultQueueTTL)
	cfg.LeaseDuration = cmp.Or(cfg.LeaseDuration, core.DefaultLeaseDuration)
	cfg.BackoffBase = cmp.Or(cfg.BackoffBase, DefaultBackoffBase)
	cfg.BackoffMax = cmp.Or(cfg.BackoffMax, DefaultBackoffMax)
	cfg.HeartbeatFlush = cmp.Or(cfg.HeartbeatFlush, DefaultHeartbeatFlush)
	if cfg.RequiresGPU == nil {
		cfg.RequiresGPU = func(string) bool { return false }
	}
	if clock == nil {
		clock = core.SystemClock{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{
		st:       st,
		clock:    clock,
		cfg:      cfg,
		logger:   logger,
		rnd:      rand.Float64,
		notifyCh: make(chan struct{}),
		full:     make(chan struct{}, 1),
	}
}

// Config returns the effective configuration, defaults filled.
func (s *Service) Config() Config { return s.cfg }

// Store returns the store the queue works on.
func (s *Service) Store() store.Store { return s.st }

// Notify returns a channel that is closed at the next event that may make
// work claimable (submit, retry, requeue, a failure with retry). Long-poll
// claims wait on it. Each close starts a new generation, so a notifier
// never blocks and a waiter never misses a wake-up that happens after it
// took the channel.
func (s *Service) Notify() <-chan struct{} {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	return s.notifyCh
}

// Signal wakes every long-poll claimer (closes the current Notify
// generation). The orchestrator calls it after it requeued tasks, which
// makes work claimable without going through the queue.
func (s *Service) Signal() { s.notify() }

// notify wakes every Notify waiter, here and on the other replicas.
func (s *Service) notify() {
	s.notifyLocal()
	s.relayOut(SignalClaimable)
}

// notifyLocal wakes every Notify waiter of this process.
func (s *Service) notifyLocal() {
	s.notifyMu.Lock()
	close(s.notifyCh)
	s.notifyCh = make(chan struct{})
	s.notifyMu.Unlock()
}

// SetWaker registers a callback run after a submit or a registration, so
// the orchestrator's tick runs at once. reason is "submit" or "register".
// The callback must not block.
func (s *Service) SetWaker(f func(reason string)) {
	if f == nil {
		s.waker.Store(nil)
		return
	}
	s.waker.Store(&f)
}

func (s *Service) wake(reason string) {
	s.wakeLocal(reason)
	s.relayOut(reason)
}

func (s *Service) wakeLocal(reason string) {
	if f := s.waker.Load(); f != nil {
		(*f)(reason)
	}
}

// Backoff returns the delay before retry number failures (1 for the first
// failure): base·2^(failures-1) capped at max, then jittered uniformly into
// [d/2, d] so that tasks failing together do not retry together. rnd
// returns values in [0, 1); nil means math/rand.
func Backoff(failures int, base, limit time.Duration, rnd func() float64) time.Duration {
	if rnd == nil {
		rnd = rand.Float64
	}
	if base <= 0 || limit <= 0 {
		return 0
	}
	failures = max(failures, 1)
	d := limit
	if shift := failures - 1; shift < 62 && float64(base)*math.Exp2(float64(shift)) < float64(limit) {
		d = base << shift
	}
	half := d / 2
	return half + time.Duration(rnd()*float64(d-half))
}

// Submit validates and inserts tasks in one transaction. Every item is
// checked before anything is written; errors are *core.Error (EINVALID, or
// ETOOLARGE for params over 1 MiB) whose Field names the offending field,
// as "tasks[i].field" in batches of more than one. No event is written per
// submission: a submit of 1,000 tasks stays one round trip.
func (s *Service) Submit(ctx context.Context, reqs []SubmitRequest) ([]store.TaskInsertResult, error) {
	tasks, external, err := s.prepare(reqs)
	if err != nil {
		return nil, err
	}
	if err := checkCallbacks(reqs); err != nil {
		return nil, err
	}
	if err := s.checkOwnerCap(ctx, tasks); err != nil {
		return nil, err
	}
	// Check external dependencies here so that the error names the exact
	// field; the store checks again inside its transaction.
	for _, ext := range external {
		id, field := ext.id, ext.field
		dep, err := s.st.TaskGet(ctx, id)
		if errors.Is(err, core.ErrNotFound) {
			return nil, core.Invalid(field, "unknown task id %s", id)
		}
		if err != nil {
			return nil, fmt.Errorf("submit: check dependency %s: %w", id, err)
		}
		if dep.State == core.TaskFailed || dep.State == core.TaskCancelled {
			return nil, core.Invalid(field, "task %s is %s; a task depending on it could never run", id, dep.State)
		}
	}
	res, err := s.st.TaskInsertMany(ctx, &store.TaskInsertManyParams{
		Now: s.clock.Now(), Tasks: tasks, CallbackURLs: s.callbackURLs(reqs, tasks),
	})
	if err != nil {
		return nil, fmt.Errorf("submit %d tasks: %w", len(tasks), err)
	}
	s.notify()
	s.wake("submit")
	return res, nil
}

// Get returns one task or core.ErrNotFound.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (*core.Task, error) {
	t, err := s.st.TaskGet(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get task %s: %w", id, err)
	}
	return t, nil
}

// List lists tasks, newest first.
func (s *Service) List(ctx context.Context, p *store.TaskListParams) ([]*core.Task, error) {
	if p == nil {
		p = &store.TaskListParams{}
	}
	if p.Limit < 0 || p.Limit > 1000 {
		return nil, core.Invalid("limit", "must be between 1 and 1000")
	}
	for i, st := range p.States {
		if !st.Valid() {
			return nil, core.Invalid(fmt.Sprintf("states[%d]", i), "unknown task state %q", st)
		}
	}
	ts, err := s.st.TaskList(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return ts, nil
}

// Cancel cancels a queued or running task (core.ErrConflict if it is
// already final). The holding agent learns it from its next heartbeat.
func (s *Service) Cancel(ctx context.Context, id uuid.UUID) (*core.Task, error) {
	now := s.clock.Now()
	t, err := CancelTask(ctx, s.st, id, now)
	if err != nil {
		return nil, s.stateConflict(ctx, id, err, "task is already %s")
	}
	s.emit(ctx, taskEvent(now, core.EventTaskCancelled, t, "cancelled by operator"))
	return t, nil
}

// Retry puts a failed or cancelled task back in the queue with fresh
// failure and loss counters.
func (s *Service) Retry(ctx context.Context, id uuid.UUID) (*core.Task, error) {
	now := s.clock.Now()
	t, err := RetryTask(ctx, s.st, id, now)
	if err != nil {
		return nil, s.stateConflict(ctx, id, err, "task is %s; only a failed or cancelled task can be retried")
	}
	s.emit(ctx, taskEvent(now, core.EventTaskRetried, t, "retried by operator"))
	s.notify()
	s.wake("submit")
	return t, nil
}

// stateConflict turns a store conflict on task id into one caller-safe
// message naming the task's state (format has one %s for it), so that the
// answer reads once, whatever the backend's own wording; other errors pass
// through. The caller (client, CLI) names the operation and the id.
func (s *Service) stateConflict(ctx context.Context, id uuid.UUID, err error, format string) error {
	if !errors.Is(err, core.ErrConflict) {
		return err
	}
	t, gerr := s.st.TaskGet(ctx, id)
	if gerr != nil {
		return err
	}
	return &stateConflictError{e: &core.Error{Code: core.ECONFLICT, Message: fmt.Sprintf(format, t.State)}}
}

// stateConflictError is a caller-safe conflict that is still
// core.ErrConflict for errors.Is.
type stateConflictError struct{ e *core.Error }

func (c *stateConflictError) Error() string   { return c.e.Error() }
func (c *stateConflictError) Unwrap() []error { return []error{c.e, core.ErrConflict} }

// registerStates are the worker states in which an agent may register.
var registerStates = []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting, core.WorkerReady}

// Register records what an agent reports when it starts: agent version,
// GPUs, instance id (kept if the row already has one) and a first
// heartbeat. It does not change the worker's state (the orchestrator moves
// it to ready). A worker of a pool that requires GPUs and reports none is
// refused, and a gpu-missing failure is requested from the orchestrator
// (the only writer of worker state), which applies it in its next tick.
func (s *Service) Register(ctx context.Context, workerID uuid.UUID, info RegisterInfo) (*core.Worker, error) {
	w, err := s.st.WorkerGet(ctx, workerID)
	if err != nil {
		return nil, fmt.Errorf("register worker %s: %w", workerID, err)
	}
	if !isOneOf(w.State, registerStates) {
		return nil, &core.Error{Code: core.ECONFLICT, Message: fmt.Sprintf("worker is %s", w.State)}
	}
	now := s.clock.Now()
	if s.cfg.RequiresGPU(w.Pool) && len(info.GPUs) == 0 {
		msg := fmt.Sprintf("gpu-missing: pool %s requires GPUs and the agent found none", w.Pool)
		// The orchestrator (the only writer of worker state) fails the
		// worker in its next tick, woken below.
		if err := s.st.WorkerRequestPut(ctx, &store.WorkerRequest{
			WorkerID: workerID, Action: store.WorkerActionFail, Failure: core.FailGPUMissing,
			Reason: msg, RequestedBy: "agent", RequestedAt: now,
		}); err != nil {
			return nil, fmt.Errorf("register worker %s: report gpu-missing: %w", workerID, err)
		}
		s.wake("register")
		return nil, core.Invalid("gpus", "%s", msg)
	}
	up := &store.WorkerUpdateParams{
		Now: now, ID: workerID, FromStates: registerStates,
		AgentVersion: &info.AgentVersion, LastHeartbeat: &now,
		GPUs: info.GPUs,
	}
	if up.GPUs == nil {
		up.GPUs = []core.GPU{}
	}
	if w.InstanceID == "" && info.InstanceID != "" {
		up.InstanceID = &info.InstanceID
	}
	w, err = s.st.WorkerUpdate(ctx, up)
	if err != nil {
		return nil, fmt.Errorf("register worker %s: %w", workerID, err)
	}
	s.pools.Store(workerID, w.Pool)
	s.wake("register")
	return w, nil
}

// Claim claims up to max tasks of the worker's pool. The store checks the
// worker's state atomically with the claim. No event is written per claim:
// claims are the hot path and the task row already records who runs it.
func (s *Service) Claim(ctx context.Context, workerID uuid.UUID, max int) ([]*core.Task, error) {
	if max < 1 || max > MaxClaim {
		return nil, core.Invalid("max", "must be between 1 and %d", MaxClaim)
	}
	pool, err := s.workerPool(ctx, workerID)
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", err)
	}
	ts, err := s.st.TaskClaim(ctx, []*store.TaskClaimParams{{
		Now: s.clock.Now(), WorkerID: workerID, Pool: pool, Max: max,
		LeaseDuration: s.cfg.LeaseDuration, OwnerLimit: s.cfg.OwnerLimit,
	}})
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", err)
	}
	return ts[0], nil
}

// ClaimMany runs several claims, for any workers, in one store transaction
// (store TaskClaim); results are in request order. Each claim has the
// semantics of Claim, except that a worker that cannot claim (unknown,
// not booting or ready) gets nothing instead of an error once its pool is
// known; a worker whose pool cannot be read fails the whole call.
func (s *Service) ClaimMany(ctx context.Context, reqs []ClaimRequest) ([][]*core.Task, error) {
	for i, r := range reqs {
		if r.Max < 1 || r.Max > MaxClaim {
			return nil, core.Invalid(fmt.Sprintf("claims[%d].max", i), "must be between 1 and %d", MaxClaim)
		}
	}
	if len(reqs) == 0 {
		return [][]*core.Task{}, nil
	}
	buf, err := s.claimParams(ctx, reqs)
	if err != nil {
		return nil, err
	}
	defer s.putClaimParams(buf)
	out, err := s.st.TaskClaim(ctx, buf.params)
	if err != nil {
		return nil, fmt.Errorf("claim tasks for %d workers: %w", len(reqs), err)
	}
	return out, nil
}

// Release undoes claims that never reached workerID (the claimer went away
// while the claim was granted): the tasks return to queued as if never
// claimed, and waiting claimers are woken.
func (s *Service) Release(ctx context.Context, workerID uuid.UUID, leases []core.Lease) (int, error) {
	if len(leases) == 0 {
		return 0, nil
	}
	wl := make([]store.WorkerLease, len(leases))
	for i, l := range leases {
		wl[i] = store.WorkerLease{WorkerID: workerID, Lease: l}
	}
	n, err := s.st.TaskRelease(ctx, &store.TaskReleaseParams{Now: s.clock.Now(), Leases: wl})
	if err != nil {
		return 0, fmt.Errorf("release undelivered claims of worker %s: %w", workerID, err)
	}
	if n > 0 {
		s.notify()
	}
	return n, nil
}

// workerPool returns the pool of a worker, from cache when possible.
func (s *Service) workerPool(ctx context.Context, workerID uuid.UUID) (string, error) {
	if p, ok := s.pools.Load(workerID); ok {
		return p, nil
	}
	w, err := s.st.WorkerGet(ctx, workerID)
	if err != nil {
		return "", fmt.Errorf("worker %s: %w", workerID, err)
	}
	s.pools.Store(workerID, w.Pool)
	return w.Pool, nil
}

// Complete marks a held task succeeded with result (a JSON object of at
// most 1 MiB; empty means {}). A stale lease returns core.ErrLeaseLost and
// changes nothing. No event is written per success (throughput); the task
// row keeps finished_at and the worker its tasks_done.
func (s *Service) Complete(ctx context.Context, workerID uuid.UUID, lease core.Lease, result json.RawMessage) error {
	lost, err := s.CompleteMany(ctx, workerID, []store.TaskCompletion{{Lease: lease, Result: result}})
	if err != nil {
		return err
	}
	if len(lost) > 0 {
		return fmt.Errorf("complete task %s: %w", lease.TaskID, core.ErrLeaseLost)
	}
	return nil
}

// CompleteMany completes several held tasks in one transaction and returns
// the leases that were stale (those changed nothing). Completions of
// concurrent callers are group-committed: one TaskCompleteBatch serves
// every call that arrived while the previous one ran (see complete.go).
func (s *Service) CompleteMany(ctx context.Context, workerID uuid.UUID, items []store.TaskCompletion) ([]core.Lease, error) {
	checked, err := CheckCompletions(items)
	if err != nil {
		return nil, err
	}
	if len(checked) == 0 {
		return nil, nil
	}
	lost, err := s.commitCompletion(ctx, &store.TaskCompleteParams{Now: s.clock.Now(), WorkerID: workerID, Items: checked})
	if err != nil {
		return nil, fmt.Errorf("complete %d tasks: %w", len(checked), err)
	}
	if len(lost) < len(checked) {
		// A completion can make work claimable (a dependent whose last
		// dependency it was, an owner below its limit again): parked
		// claims are retried at once, as after a submit.
		s.notify()
	}
	return lost, nil
}

// Fail records a handler failure for a held lease. A retryable failure with
// attempts left requeues the task with run_after = now + Backoff(failures+1);
// otherwise the task fails for good. msg is cut to 16 KiB. An event records
// either outcome.
func (s *Service) Fail(ctx context.Context, workerID uuid.UUID, lease core.Lease, msg string, retryable bool) (*core.Task, error) {
	now := s.clock.Now()
	msg = truncateUTF8(msg, core.MaxErrorBytes)
	t, err := FailTask(ctx, s.st, &FailParams{
		Now: now, WorkerID: workerID, Lease: lease, Error: msg, Retryable: retryable,
		Backoff: func(failures int) time.Duration {
			return Backoff(failures, s.cfg.BackoffBase, s.cfg.BackoffMax, s.rnd)
		},
	})
	if err != nil {
		return nil, err
	}
	s.emit(ctx, failEvent(now, t, fmt.Sprintf("attempt %d failed: %s", t.Attempt, firstLine(msg))))
	if t.State == core.TaskQueued {
		s.notify()
	}
	return t, nil
}

// Progress records progress (a fraction in [0, 1]) and a short message for
// a held lease; core.ErrLeaseLost if stale.
func (s *Service) Progress(ctx context.Context, workerID uuid.UUID, lease core.Lease, progress *float64, msg string) error {
	if progress != nil && (math.IsNaN(*progress) || *progress < 0 || *progress > 1) {
		return core.Invalid("progress", "must be a fraction between 0 and 1")
	}
	if len(msg) > MaxProgressMessageBytes {
		return core.Invalid("message", "is %s bytes; the limit is %s", commas(len(msg)), commas(MaxProgressMessageBytes))
	}
	if err := s.st.TaskProgress(ctx, &store.TaskProgressParams{Now: s.clock.Now(), WorkerID: workerID, Lease: lease, Progress: progress, Message: msg}); err != nil {
		return fmt.Errorf("progress of task %s: %w", lease.TaskID, err)
	}
	return nil
}

// Logs stores a batch of log lines shipped by a worker. Lines are
// attributed to workerID whatever they say; over-long lines are cut to
// 16 KiB.
func (s *Service) Logs(ctx context.Context, workerID uuid.UUID, lines []*core.LogLine) error {
	if len(lines) > MaxLogLines {
		return core.Invalid("lines", "has %s lines; the limit is %s per request", commas(len(lines)), commas(MaxLogLines))
	}
	now := s.clock.Now()
	out := make([]*core.LogLine, 0, len(lines))
	for i, l := range lines {
		if l == nil {
			return core.Invalid(fmt.Sprintf("lines[%d]", i), "is null")
		}
		switch l.Stream {
		case "stdout", "stderr", "agent":
		case "":
			l.Stream = "agent"
		default:
			return core.Invalid(fmt.Sprintf("lines[%d].stream", i), "must be stdout, stderr or agent")
		}
		c := *l
		c.ID = 0
		c.WorkerID = workerID.String()
		if c.Time.IsZero() {
			c.Time = now
		}
		c.Line = truncateUTF8(c.Line, MaxLogLineBytes)
		out = append(out, &c)
	}
	if len(out) == 0 {
		return nil
	}
	if err := s.st.LogInsertMany(ctx, out); err != nil {
		return fmt.Errorf("store %d log lines of worker %s: %w", len(out), workerID, err)
	}
	return nil
}

// taskEvent builds an event about one task.
func taskEvent(now time.Time, kind core.EventKind, t *core.Task, msg string) *core.Event {
	e := &core.Event{Time: now, Kind: kind, Pool: t.Pool, TaskID: t.ID.String(), Message: msg}
	if t.WorkerID != nil {
		e.WorkerID = t.WorkerID.String()
	}
	return e
}

// failEvent is the event of a failed attempt: task.retried when the task
// went back to the queue, task.failed when it is final.
func failEvent(now time.Time, t *core.Task, msg string) *core.Event {
	if t.State == core.TaskQueued {
		return taskEvent(now, core.EventTaskRetried, t,
			fmt.Sprintf("%s; retry %d of %d at %s", msg, t.Failures, t.MaxAttempts-1, t.RunAfter.Format(time.RFC3339)))
	}
	return taskEvent(now, core.EventTaskFailed, t, msg)
}

func isOneOf[T comparable](v T, set []T) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// firstLine returns the first line of s, for event messages.
func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
