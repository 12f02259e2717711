// Package store defines Drover's persistence interface. Two backends
// implement it, sqlite (embedded, the default) and postgres (production,
// several replicas), and one conformance suite (storetest) proves they behave
// the same.
//
// Conventions (after River's driver interface): methods are Noun+Verb, take
// ctx first and one *Params struct where there is more than one argument, and
// every time-dependent method receives Now from the caller's injected clock;
// stores never read the wall clock. Errors are core.ErrNotFound,
// core.ErrLeaseLost, core.ErrConflict, a *core.Error with EINVALID, or a
// wrapped backend error.
package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// Store is the whole persistence surface. It is deliberately wide; keep it
// internal.
type Store interface {
	// Backend returns "sqlite" or "postgres".
	Backend() string
	// Migrate applies pending embedded migrations, one per transaction. On
	// PostgreSQL it holds an advisory lock so replicas do not race. It
	// returns the names of the migrations it applied.
	Migrate(ctx context.Context) ([]string, error)
	// Close releases connections.
	Close() error

	// --- tasks ---

	// TaskInsertMany inserts tasks in one transaction. Params were validated
	// by package queue; the store still checks what needs the database:
	// every DependsOn id must exist (else EINVALID naming depends_on) and must
	// not be failed or cancelled (EINVALID: the dependent could never run).
	// A task whose IdempotencyKey (per owner) already exists is not inserted;
	// the existing task is returned instead with Existing=true. Nothing is
	// written when any item is invalid. Dependencies on tasks earlier in the
	// same batch are allowed.
	TaskInsertMany(ctx context.Context, params *TaskInsertManyParams) ([]TaskInsertResult, error)
	// TaskGet returns one task or core.ErrNotFound.
	TaskGet(ctx context.Context, id uuid.UUID) (*core.Task, error)
	// TaskList lists tasks matching the filter, newest first.
	TaskList(ctx context.Context, params *TaskListParams) ([]*core.Task, error)
	// TaskCountByState returns the number of tasks per state (all pools).
	TaskCountByState(ctx context.Context) (map[core.TaskState]int, error)

	// TaskClaim atomically claims up to Max claimable tasks for a worker:
	// state queued, pool = Pool, run_after <= Now, deps_pending = 0, and the
	// owner below OwnerLimit running tasks (0 = unlimited) counting the tasks
	// granted in this very claim, under any concurrency. Nothing is claimed
	// unless the worker row is in state booting or ready (checked atomically
	// with the claim: on PostgreSQL the worker row is locked FOR SHARE, so a
	// concurrent drain and claim serialise). Order: priority
	// descending, then created_at, then id. Each claimed task becomes
	// running with a fresh lease token, attempt+1, worker_id, started_at=Now,
	// lease_expires_at = Now+LeaseDuration. Returns an empty slice when
	// nothing is claimable.
	TaskClaim(ctx context.Context, params *TaskClaimParams) ([]*core.Task, error)
	// TaskClaimBatch runs several claims, possibly for different workers and
	// pools, in ONE transaction (one commit), so a server can serve many
	// agents at the cost of one. Each item has the semantics of TaskClaim,
	// applied in input order: the owner limit counts the tasks granted to
	// earlier items of the batch, and no task is granted twice. Results are
	// in input order (an empty slice for an item that got nothing, including
	// a worker that is unknown or not booting/ready). An invalid item fails
	// the whole batch before anything changes.
	TaskClaimBatch(ctx context.Context, params []*TaskClaimParams) ([][]*core.Task, error)
	// TaskLeaseRenew extends lease_expires_at to Until for each lease that is
	// still held by its worker (task running, token and worker match), for
	// many workers in one round trip. It returns the leases that are no
	// longer held; nothing changes for those.
	TaskLeaseRenew(ctx context.Context, params *TaskLeaseRenewParams) (lost []core.Lease, err error)
	// TaskRelease undoes claims whose tasks never reached their worker (the
	// claimer went away while the claim was being granted): each task still
	// held under its lease by that worker goes back to queued as if it had
	// not been claimed (attempt-1, no start time, lease and worker cleared,
	// run_after unchanged, nothing counted). Returns how many were released.
	TaskRelease(ctx context.Context, params *TaskReleaseParams) (int, error)
	// TaskProgress records progress for a lease held by WorkerID
	// (ErrLeaseLost if stale or held by another worker).
	TaskProgress(ctx context.Context, params *TaskProgressParams) error
	// TaskCompleteMany marks each held task succeeded with its result,
	// finished_at = Now, clears the lease, decrements deps_pending of its
	// dependents and increments the worker's tasks_done and last_task_at.
	// Items whose lease is stale change nothing and are returned in lost.
	TaskCompleteMany(ctx context.Context, params *TaskCompleteManyParams) (lost []core.Lease, err error)
	// TaskCompleteBatch runs several TaskCompleteMany calls, possibly for
	// different workers, in ONE transaction (one commit). lost[i] holds the
	// stale leases of params[i] (never nil); nothing changes for those.
	TaskCompleteBatch(ctx context.Context, params []*TaskCompleteManyParams) (lost [][]core.Lease, err error)
	// TaskFail records a handler failure for a held lease (ErrLeaseLost if
	// stale): failures+1; when Retryable and failures+1 < max_attempts the
	// task returns to queued with run_after = RetryAt, else it becomes failed
	// (error = Error) and its queued dependents fail with "dependency failed"
	// (transitively). The worker's tasks_failed and last_task_at are updated.
	// Returns the task after the change.
	TaskFail(ctx context.Context, params *TaskFailParams) (*core.Task, error)
	// TaskRequeueLost requeues running tasks whose lease is lost: those held
	// by any worker in WorkerIDs, plus (when ExpiredBefore is non-zero) those
	// whose lease_expires_at < ExpiredBefore. Each gets lost+1; if
	// lost+1 >= max_lost it becomes failed with error
	// fmt.Sprintf(core.ReasonLostFormat, lost+1) (and its dependents fail),
	// else queued with run_after = Now and the lease cleared. Returns the
	// tasks after the change.
	TaskRequeueLost(ctx context.Context, params *TaskRequeueLostParams) ([]*core.Task, error)
	// TaskTimeoutRunning fails (as a retryable handler failure with error
	// "timeout", same rules as TaskFail with RetryAt = Now) every running
	// task whose started_at + timeout < Now. Returns the tasks after the
	// change; callers tell the holding agents to kill them.
	TaskTimeoutRunning(ctx context.Context, now time.Time) ([]*core.Task, error)
	// TaskCancel cancels a queued or running task (core.ErrConflict if it is
	// already final) and fails its dependents. Returns the task after.
	TaskCancel(ctx context.Context, id uuid.UUID, now time.Time) (*core.Task, error)
	// TaskRetry puts a failed or cancelled task back to queued with fresh
	// counters (attempt kept, failures and lost reset). core.ErrConflict if
	// it is not failed or cancelled.
	TaskRetry(ctx context.Context, id uuid.UUID, now time.Time) (*core.Task, error)
	// TaskExpireQueued fails queued tasks created before CreatedBefore with
	// reason "expired" (and their dependents). Returns how many expired.
	TaskExpireQueued(ctx context.Context, createdBefore, now time.Time) (int, error)
	// TaskDemand returns per pool the number of tasks claimable now (queued,
	// run_after <= Now, deps done, honouring OwnerLimit against each owner's
	// running count across all pools) and the number running. With
	// params.Cap > 0 the queued-side counts (Queued, Claimable,
	// OwnerBlocked) are exact below Cap and reported as Cap when they are at
	// least Cap, so the cost does not grow with the backlog; Running is
	// always exact (it is bounded by the fleet).
	TaskDemand(ctx context.Context, params *TaskDemandParams) (map[string]PoolDemand, error)

	// --- workers ---

	// WorkerInsert inserts a worker row (state requested, usually).
	WorkerInsert(ctx context.Context, w *core.Worker) error
	// WorkerGet returns one worker or core.ErrNotFound.
	WorkerGet(ctx context.Context, id uuid.UUID) (*core.Worker, error)
	// WorkerList returns workers matching the filter, oldest first, with
	// Running filled in (leases held) — in a constant number of queries.
	WorkerList(ctx context.Context, params *WorkerListParams) ([]*core.Worker, error)
	// WorkerUpdate applies a partial update. When FromStates is non-empty
	// the update only happens if the current state is one of them, else
	// core.ErrConflict. State changes set state_changed_at = Now.
	WorkerUpdate(ctx context.Context, params *WorkerUpdateParams) (*core.Worker, error)
	// WorkerHeartbeat records a heartbeat (last_heartbeat_at = Now, metrics)
	// without changing state. Returns core.ErrNotFound for unknown workers.
	WorkerHeartbeat(ctx context.Context, params *WorkerHeartbeatParams) error
	// WorkerHeartbeatMany is the batched form used by the API server.
	WorkerHeartbeatMany(ctx context.Context, params []WorkerHeartbeatParams) error
	// WorkerDeleteTerminated deletes terminated/failed-and-terminated worker
	// rows older than Before. Returns the count.
	WorkerDeleteTerminated(ctx context.Context, before time.Time) (int, error)

	// --- events and logs ---

	// EventInsertMany appends events (ID and Time are assigned if zero).
	EventInsertMany(ctx context.Context, events []*core.Event) error
	// EventList lists events, newest first.
	EventList(ctx context.Context, params *EventListParams) ([]*core.Event, error)
	// LogInsertMany appends log lines.
	LogInsertMany(ctx context.Context, lines []*core.LogLine) error
	// LogList lists log lines, oldest first.
	LogList(ctx context.Context, params *LogListParams) ([]*core.LogLine, error)
	// Prune deletes events and logs older than Before, and final tasks
	// finished before Before. Returns rows deleted.
	Prune(ctx context.Context, before time.Time) (int, error)

	// --- breakers ---

	// BreakerGetAll returns every persisted breaker state.
	BreakerGetAll(ctx context.Context) ([]*core.BreakerState, error)
	// BreakerPut saves one breaker state (upsert by key).
	BreakerPut(ctx context.Context, state *core.BreakerState) error

	// --- leadership ---

	// LeaderAttemptElect tries to become leader (or re-elect if already
	// leader with the same ID) until Now+TTL. It returns true when the
	// caller holds leadership after the call. An expired leader row is taken
	// over.
	LeaderAttemptElect(ctx context.Context, params *LeaderElectParams) (bool, error)
	// LeaderResign gives up leadership if LeaderID holds it.
	LeaderResign(ctx context.Context, leaderID string) error
	// LeaderGet returns the current leader id and expiry ("" if none).
	LeaderGet(ctx context.Context) (string, time.Time, error)

	// --- status reads, spend and samples (samples.go) ---

	Reporting

	// --- key/value (provider adoption data, local pids, etc.) ---

	// KVPut upserts a small value under key.
	KVPut(ctx context.Context, key string, value json.RawMessage, now time.Time) error
	// KVGet returns the value or core.ErrNotFound.
	KVGet(ctx context.Context, key string) (json.RawMessage, error)
	// KVList returns all values whose key starts with prefix.
	KVList(ctx context.Context, prefix string) (map[string]json.RawMessage, error)
	// KVDelete deletes key (no error if absent).
	KVDelete(ctx context.Context, key string) error
}

// TaskInsertManyParams is the input of TaskInsertMany.
type TaskInsertManyParams struct {
	Now time.Time
	// Tasks are fully defaulted and validated by package queue; ID,
	// CreatedAt, RunAfter and UpdatedAt are set by the caller.
	Tasks []*core.Task
}

// TaskInsertResult is one result of TaskInsertMany, in input order.
type TaskInsertResult struct {
	Task *core.Task
	// Existing is true when an earlier task with the same owner and
	// idempotency key was returned instead of inserting.
	Existing bool
}

// TaskListParams filters TaskList.
type TaskListParams struct {
	States   []core.TaskState
	Owner    string
	Pool     string
	Type     string
	WorkerID *uuid.UUID
	// BeforeID pages backwards (tasks created before this id's task).
	BeforeID *uuid.UUID
	Limit    int // default 100, max 1000
}

// TaskClaimParams is the input of TaskClaim.
type TaskClaimParams struct {
	Now           time.Time
	WorkerID      uuid.UUID
	Pool          string
	Max           int // 1..1000
	LeaseDuration time.Duration
	OwnerLimit    int // 0 = unlimited
}

// TaskLeaseRenewParams is the input of TaskLeaseRenew.
type TaskLeaseRenewParams struct {
	Now    time.Time
	Until  time.Time
	Leases []WorkerLease
}

// WorkerLease is a lease as held by one worker.
type WorkerLease struct {
	WorkerID uuid.UUID
	core.Lease
}

// TaskReleaseParams is the input of TaskRelease.
type TaskReleaseParams struct {
	Now    time.Time
	Leases []WorkerLease
}

// TaskProgressParams is the input of TaskProgress. The lease must be held
// by WorkerID.
type TaskProgressParams struct {
	Now      time.Time
	WorkerID uuid.UUID
	Lease    core.Lease
	Progress *float64
	Message  string
}

// TaskCompletion is one item of TaskCompleteManyParams.
type TaskCompletion struct {
	Lease  core.Lease
	Result json.RawMessage
}

// TaskCompleteManyParams is the input of TaskCompleteMany.
type TaskCompleteManyParams struct {
	Now      time.Time
	WorkerID uuid.UUID
	Items    []TaskCompletion
}

// TaskFailParams is the input of TaskFail.
type TaskFailParams struct {
	Now       time.Time
	WorkerID  uuid.UUID
	Lease     core.Lease
	Error     string
	Retryable bool
	// RetryAt is the run_after of the requeued task (backoff with jitter,
	// computed by package queue).
	RetryAt time.Time
}

// TaskRequeueLostParams is the input of TaskRequeueLost.
type TaskRequeueLostParams struct {
	Now           time.Time
	WorkerIDs     []uuid.UUID
	ExpiredBefore time.Time
}

// TaskDemandParams is the input of TaskDemand.
type TaskDemandParams struct {
	Now        time.Time
	OwnerLimit int
	// Cap, when > 0, bounds the counting: per pool, Queued, Claimable and
	// OwnerBlocked are exact up to Cap and a value equal to Cap means "at
	// least Cap". Owner limits are still honoured exactly: an owner's free
	// slots are consumed across pools as without a cap. The control loop
	// only needs demand up to each pool's max × concurrency. 0 = exact.
	Cap int
}

// PoolDemand is the demand signal of one pool, in task slots.
type PoolDemand struct {
	// Queued counts all queued tasks of the pool (claimable or not).
	Queued int `json:"queued"`
	// Claimable counts tasks a worker could take right now.
	Claimable int `json:"claimable"`
	// Running counts tasks running in the pool.
	Running int `json:"running"`
	// OwnerBlocked counts queued, otherwise-ready tasks held back only by
	// their owner's running limit (for "why" explanations).
	OwnerBlocked int `json:"owner_blocked"`
}

// WorkerListParams filters WorkerList.
type WorkerListParams struct {
	States []core.WorkerState
	Pool   string
	// LiveOnly selects states for which State.Live() is true plus
	// terminating and failed-but-not-terminated rows.
	LiveOnly bool
	// IDs, when not empty, selects only these workers (the other filters
	// still apply); unknown ids are simply absent from the result.
	IDs   []uuid.UUID
	Limit int // 0 = no limit
	// Brief may leave the fields the control loop does not read at their
	// zero value: TokenHash, AgentVersion, GPUs, Metrics, TasksFailed,
	// GPUType and Region (a backend may still fill them). The orchestrator
	// lists the whole fleet every tick; decoding less makes that cheaper.
	Brief bool
	// Snapshot, when not nil, is called once per WorkerList call, as soon
	// as the state the result reflects is fixed (the read's snapshot is
	// taken), typically before the rows are decoded: writes committed after
	// Snapshot returns are not reflected in the result. A caller can start
	// writes that must not show in the list (the control loop's lease
	// maintenance) without waiting for the decoding. Snapshot is called at
	// the latest just before WorkerList returns, on error too; it must not
	// block on WorkerList's result.
	Snapshot func()
}

// SnapshotTaken calls p.Snapshot the first time it is called for one
// WorkerList call; backends use it so the callback runs exactly once.
// once must be a fresh *bool per call.
func (p *WorkerListParams) SnapshotTaken(once *bool) {
	if p.Snapshot != nil && !*once {
		*once = true
		p.Snapshot()
	}
}

// WorkerUpdateParams is a partial update of one worker; nil fields are left
// as they are.
type WorkerUpdateParams struct {
	Now        time.Time
	ID         uuid.UUID
	FromStates []core.WorkerState

	State          *core.WorkerState
	Failure        *core.FailureClass
	Reason         *string
	InstanceID     *string
	PricePerHour   *float64
	AgentVersion   *string
	GPUs           []core.GPU // nil = unchanged
	ReadyAt        *time.Time
	TerminatedAt   *time.Time
	DeleteAttempts *int
	MissingLists   *int
	LastHeartbeat  *time.Time
}

// WorkerHeartbeatParams is the input of WorkerHeartbeat.
type WorkerHeartbeatParams struct {
	Now     time.Time
	ID      uuid.UUID
	Metrics json.RawMessage
}

// EventListParams filters EventList.
type EventListParams struct {
	Kinds    []core.EventKind
	Pool     string
	WorkerID string
	TaskID   string
	Since    time.Time
	BeforeID int64
	// AfterID, when > 0, selects events with id > AfterID and returns them
	// OLDEST first (following the log: pass the last id seen).
	AfterID int64
	Limit   int // default 100, max 10000
}

// LogListParams filters LogList.
type LogListParams struct {
	WorkerID string
	TaskID   string
	AfterID  int64
	Limit    int // default 1000, max 10000
}

// LeaderElectParams is the input of LeaderAttemptElect.
type LeaderElectParams struct {
	Now      time.Time
	LeaderID string
	TTL      time.Duration
}
