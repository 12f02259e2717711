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

	// TaskClaim runs one claim per item, possibly for different workers and
	// pools, in ONE transaction (one commit): a server serves many agents
	// at the cost of one. Each item atomically claims up to Max claimable
	// tasks for its worker: state queued, pool = Pool, run_after <= Now,
	// deps_pending = 0, and the owner below OwnerLimit running tasks (0 =
	// unlimited) counting the tasks granted in this very claim and to
	// earlier items, under any concurrency. Nothing is claimed for a worker
	// that is unknown or not booting or ready (checked atomically with the
	// claim: on PostgreSQL the worker row is locked FOR SHARE, so a
	// concurrent drain and claim serialise). Order: priority descending,
	// then created_at, then id. Each claimed task becomes running with a
	// fresh lease token, attempt+1, worker_id, started_at=Now,
	// lease_expires_at = Now+LeaseDuration. No task is granted twice.
	// Results are in input order, an empty slice for an item that got
	// nothing. An invalid item fails the whole call before anything
	// changes.
	//
	// The selection stays in SQL (not in package queue) because atomicity
	// needs it: SKIP LOCKED and the owner count must be evaluated by the
	// database under the same locks that grant the rows, or two servers
	// could grant the same task or exceed an owner's limit.
	TaskClaim(ctx context.Context, params []*TaskClaimParams) ([][]*core.Task, error)
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
	// TaskComplete marks held tasks succeeded, for one or many workers, in
	// ONE transaction: each item's task gets its result, finished_at = Now,
	// the lease cleared; the deps_pending of its queued dependents drops by
	// one and the worker's tasks_done and last_task_at are updated. A task
	// is held when it is running under the presented token by the item's
	// worker. lost[i] holds the stale leases of params[i] (never nil);
	// nothing changes for those. This stays one backend operation (no
	// decision is taken: a held lease simply succeeds) so that the hot path
	// is one statement on PostgreSQL.
	TaskComplete(ctx context.Context, params []*TaskCompleteParams) (lost [][]core.Lease, err error)
	// TaskCompleteClaim runs TaskComplete(complete) and then
	// TaskClaim(claims) in ONE transaction (one commit), with the results
	// and rules of those two calls: the claims see what the completions
	// changed (a dependent they released is claimable in the same call). An
	// invalid claim fails the whole call before anything changes. A claim
	// that carries its worker's completions is served by it in one commit
	// instead of a completion's commit followed by the claim's.
	TaskCompleteClaim(ctx context.Context, complete []*TaskCompleteParams, claims []*TaskClaimParams) (lost [][]core.Lease, tasks [][]*core.Task, err error)
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
	// WorkerActivity returns, for every live worker (as LiveOnly selects),
	// the columns written by others than the orchestrator (heartbeats and
	// completions), its state and its running lease count, in no
	// particular order. The leader keeps the rest of each row in memory
	// and reads only this each tick.
	WorkerActivity(ctx context.Context) ([]WorkerActivity, error)
	// WorkerUpdate applies a partial update. When FromStates is non-empty
	// the update only happens if the current state is one of them, else
	// core.ErrConflict. State changes set state_changed_at = Now.
	WorkerUpdate(ctx context.Context, params *WorkerUpdateParams) (*core.Worker, error)
	// WorkerHeartbeat records heartbeats (last_heartbeat_at = Now, metrics
	// when given) without changing state, for many workers in one
	// transaction. Unknown workers are skipped.
	WorkerHeartbeat(ctx context.Context, params []WorkerHeartbeatParams) error

	// WorkerRequestPut records a request to change a worker's state,
	// replacing the worker's pending request if any.
	WorkerRequestPut(ctx context.Context, req *WorkerRequest) error
	// WorkerRequestList returns the pending requests, oldest first.
	WorkerRequestList(ctx context.Context) ([]*WorkerRequest, error)
	// WorkerRequestDelete deletes the given requests once applied; a
	// worker's request that was replaced since it was listed (another
	// action or time) is kept.
	WorkerRequestDelete(ctx context.Context, reqs []*WorkerRequest) error

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
	// finished before Before. Returns rows deleted. Under a context
	// carrying a Fence it deletes nothing once the term is over.
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

	// Ping checks that the database answers and is migrated (readiness).
	Ping(ctx context.Context) error

	// --- status reads, spend and samples (samples.go) ---

	Reporting

	// Tx runs fn in one transaction and commits when it returns nil; any
	// error rolls everything back. On PostgreSQL a transaction aborted by a
	// deadlock or serialization failure is run again from the start, so fn
	// must only change state through tx (and keep what it computes in
	// variables it resets on entry).
	Tx(ctx context.Context, fn func(ctx context.Context, tx Tx) error) error

	// OutputStore records and lists task outputs (outputs.go).
	OutputStore

	// WebhookStore keeps completion webhooks (webhooks.go).
	WebhookStore

	// Housekeeping is the leader's maintenance of old rows and planner
	// statistics (maintenance.go).
	Housekeeping
}

// TaskInsertManyParams is the input of TaskInsertMany.
type TaskInsertManyParams struct {
	Now time.Time
	// Tasks are fully defaulted and validated by package queue; ID,
	// CreatedAt, RunAfter and UpdatedAt are set by the caller.
	Tasks []*core.Task
	// CallbackURLs, when not nil, holds the completion webhook URL of each
	// task (same index; "" for none). It is recorded in the same
	// transaction for every task that is inserted; a task returned as
	// Existing keeps the callback it had.
	CallbackURLs []string
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

// TaskClaimParams is one item of TaskClaim.
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

// TaskCompletion is one item of TaskCompleteParams.
type TaskCompletion struct {
	Lease  core.Lease
	Result json.RawMessage
}

// TaskCompleteParams is one worker's completions for TaskComplete.
type TaskCompleteParams struct {
	Now      time.Time
	WorkerID uuid.UUID
	Items    []TaskCompletion
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
	// lists the whole fleet when it (re)loads its copy of it; decoding
	// less makes that cheaper.
	Brief bool
}

// WorkerActivity is what WorkerActivity reads of one live worker: the
// columns the queue writes (heartbeats, completions), the state (to notice
// a write by anyone but the orchestrator) and the leases held.
type WorkerActivity struct {
	ID    uuid.UUID
	State core.WorkerState
	// LastHeartbeatAt and LastTaskAt are zero when never set.
	LastHeartbeatAt time.Time
	LastTaskAt      time.Time
	TasksDone       int
	// Running counts the leases the worker holds.
	Running int
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

// WorkerHeartbeatParams is one item of WorkerHeartbeat.
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

// Tx is the row-level surface available inside Store.Tx. Its operations
// take no decisions: package queue reads the rows it needs (locked),
// decides every task rule in Go and writes the outcome back.
type Tx interface {
	// TaskLock returns the tasks matching params, locked until the
	// transaction ends (FOR UPDATE on PostgreSQL; SQLite has one writer),
	// ordered by id.
	TaskLock(ctx context.Context, params *TaskLockParams) ([]*core.Task, error)
	// TaskUpdateMany writes the run fields of each task as given: state,
	// attempt, failures, lost, deps_pending, worker_id, lease token and
	// expiry, result, error, progress and its message, run_after,
	// started_at, finished_at and updated_at. Definition fields (type,
	// params, owner, pool, limits) are never changed.
	TaskUpdateMany(ctx context.Context, tasks []*core.Task) error
	// TaskDependents returns the ids of the queued tasks that depend
	// directly on any of ids, ordered by id.
	TaskDependents(ctx context.Context, ids []uuid.UUID) ([]uuid.UUID, error)
	// TaskDepsUnsucceeded returns how many dependencies of task id have not
	// succeeded.
	TaskDepsUnsucceeded(ctx context.Context, id uuid.UUID) (int, error)
	// WorkerCountersAdd adds to the task counters of workers (tasks_done,
	// tasks_failed) and sets their last_task_at. Unknown workers are
	// skipped.
	WorkerCountersAdd(ctx context.Context, counters []WorkerCounters) error
	// WebhookRearm is called when a final task is retried, before its
	// row changes: it enqueues the delivery of the final state the task
	// is leaving (if its callback was not enqueued yet) and records the
	// callback again for the task's next final state, as the next round.
	// A task without a callback is left alone.
	WebhookRearm(ctx context.Context, taskID uuid.UUID, now time.Time) error
}

// TaskLockParams selects the tasks TaskLock returns. IDs and State narrow
// the selection; when any of the selectors below them is set, a task must
// also match at least one selector.
type TaskLockParams struct {
	// IDs, when not empty, selects only these tasks.
	IDs []uuid.UUID
	// State, when set, selects only tasks in this state.
	State core.TaskState

	// WorkerIDs selects tasks held by (worker_id in) these workers.
	WorkerIDs []uuid.UUID
	// LeaseExpiredBefore selects tasks whose lease expires before it.
	LeaseExpiredBefore time.Time
	// DeadlineBefore selects tasks whose started_at + timeout is before it.
	DeadlineBefore time.Time
	// CreatedBefore selects tasks created before it.
	CreatedBefore time.Time
}

// WorkerCounters is one item of WorkerCountersAdd.
type WorkerCounters struct {
	ID         uuid.UUID
	Done       int
	Failed     int
	LastTaskAt time.Time
}

// WorkerAction is what a WorkerRequest asks the orchestrator to do.
type WorkerAction string

// Worker actions.
const (
	// WorkerActionDrain asks for state draining (operator).
	WorkerActionDrain WorkerAction = "drain"
	// WorkerActionTerminate asks for state terminating (operator).
	WorkerActionTerminate WorkerAction = "terminate"
	// WorkerActionFail asks for state failed with Failure (a fact the agent
	// reported, such as gpu-missing at registration).
	WorkerActionFail WorkerAction = "fail"
)

// WorkerRequest is a pending request to change a worker's state. Only the
// orchestrator writes worker state; other components record a request and
// wake it.
type WorkerRequest struct {
	WorkerID    uuid.UUID
	Action      WorkerAction
	Failure     core.FailureClass
	Reason      string
	RequestedBy string
	RequestedAt time.Time
}
