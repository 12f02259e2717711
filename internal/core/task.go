package core

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// TaskState is the state of a task; see the package doc for the machine.
type TaskState string

// Task states.
const (
	TaskQueued    TaskState = "queued"
	TaskRunning   TaskState = "running"
	TaskSucceeded TaskState = "succeeded"
	TaskFailed    TaskState = "failed"
	TaskCancelled TaskState = "cancelled"
)

// Terminal reports whether s is a final state.
func (s TaskState) Terminal() bool {
	return s == TaskSucceeded || s == TaskFailed || s == TaskCancelled
}

// Valid reports whether s is a known state.
func (s TaskState) Valid() bool {
	switch s {
	case TaskQueued, TaskRunning, TaskSucceeded, TaskFailed, TaskCancelled:
		return true
	}
	return false
}

// Limits and defaults for tasks. They are part of the API contract.
const (
	MaxParamsBytes       = 1 << 20 // params JSON, bytes
	MaxResultBytes       = 1 << 20 // result JSON, bytes
	MaxErrorBytes        = 16 << 10
	MinPriority          = -1000
	MaxPriority          = 1000
	MaxDependsOn         = 256
	MaxTypeLen           = 128
	MaxOwnerLen          = 128
	MaxPoolLen           = 64
	MaxIdempotencyKeyLen = 255
	MaxMaxAttempts       = 100
	MaxMaxLost           = 100
	DefaultOwner         = "default"
	DefaultPool          = "default"
	DefaultMaxAttempts   = 3
	DefaultMaxLost       = 3
	DefaultTaskTimeout   = 6 * time.Hour
	MaxTaskTimeout       = 7 * 24 * time.Hour
	DefaultQueueTTL      = 7 * 24 * time.Hour
	DefaultOwnerLimit    = 5
	DefaultLeaseDuration = 25 * time.Second
	ReasonDependency     = "dependency failed"
	// ReasonDependencyPrefix starts the error of a task failed because a
	// task it depends on did not succeed; the dependency's id follows.
	ReasonDependencyPrefix = ReasonDependency + ": task "
	// ReasonDependencySuffix ends it.
	ReasonDependencySuffix = " did not succeed"
	ReasonExpired          = "expired"
	ReasonCancelled        = "cancelled"
	ReasonTimeout          = "timeout"
	ReasonLostFormat       = "worker lost %d times while running this task"
	// ReasonStalled is the error of an attempt failed by its type's
	// stall_timeout: no progress and no log line for that long.
	ReasonStalled = "stalled"
)

// Task is a unit of GPU work.
type Task struct {
	ID             uuid.UUID       `json:"id"`
	Type           string          `json:"type"`
	Params         json.RawMessage `json:"params"`
	Owner          string          `json:"owner"`
	Priority       int             `json:"priority"`
	Pool           string          `json:"pool"`
	DependsOn      []uuid.UUID     `json:"depends_on,omitempty"`
	MaxAttempts    int             `json:"max_attempts"`
	MaxLost        int             `json:"max_lost"`
	Timeout        time.Duration   `json:"timeout"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`

	State TaskState `json:"state"`
	// Attempt is the number of times the task has been claimed (1 during the
	// first run). It is what the handler sees as DROVER_ATTEMPT.
	Attempt int `json:"attempt"`
	// Failures counts handler failures (and attempt timeouts); it is compared
	// with MaxAttempts.
	Failures int `json:"failures"`
	// Lost counts lease losses (the worker died, vanished or was drained
	// while holding it); it is compared with MaxLost.
	Lost int `json:"lost"`
	// DepsPending is the number of DependsOn tasks that have not succeeded.
	DepsPending int `json:"deps_pending"`

	WorkerID       *uuid.UUID      `json:"worker_id,omitempty"`
	LeaseToken     *uuid.UUID      `json:"-"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
	Error          string          `json:"error,omitempty"`
	Progress       *float64        `json:"progress,omitempty"`
	ProgressMsg    string          `json:"progress_message,omitempty"`

	CreatedAt  time.Time  `json:"created_at"`
	RunAfter   time.Time  `json:"run_after"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// Lease is a fenced hold on a running task: every renewal, progress report,
// completion or failure must present both parts.
type Lease struct {
	TaskID uuid.UUID `json:"task_id"`
	Token  uuid.UUID `json:"lease_token"`
}

// DependencyReason is the error of a task failed because its dependency
// dep did not succeed.
func DependencyReason(dep uuid.UUID) string {
	return ReasonDependencyPrefix + dep.String() + ReasonDependencySuffix
}
