package core

import (
	"encoding/json"
	"time"
)

// EventKind classifies events. Events are append-only records of every state
// change and every scaling decision, with the reason; status, why and the
// dashboard explain the fleet from them.
type EventKind string

// Event kinds.
const (
	EventTick          EventKind = "tick"
	EventTaskSubmitted EventKind = "task.submitted"
	EventTaskClaimed   EventKind = "task.claimed"
	EventTaskSucceeded EventKind = "task.succeeded"
	EventTaskFailed    EventKind = "task.failed"
	EventTaskRetried   EventKind = "task.retried"
	EventTaskRequeued  EventKind = "task.requeued"
	EventTaskCancelled EventKind = "task.cancelled"
	EventTaskExpired   EventKind = "task.expired"
	EventWorkerSpawn   EventKind = "worker.spawn"
	EventWorkerState   EventKind = "worker.state"
	EventWorkerFailed  EventKind = "worker.failed"
	EventWorkerOrphan  EventKind = "worker.orphan"
	EventScaleUp       EventKind = "scale.up"
	EventScaleDown     EventKind = "scale.down"
	EventScaleBlocked  EventKind = "scale.blocked"
	EventBreakerState  EventKind = "breaker.state"
	EventLeader        EventKind = "leader"
	// EventLeaderChanged records a change of leader: data holds old, new,
	// term and cause (takeover, resign or shutdown).
	EventLeaderChanged EventKind = "leader.changed"
	EventProviderError EventKind = "provider.error"
	// EventProviderQuota: a provider refused the whole account (balance,
	// API key); every breaker of that provider was opened at once.
	EventProviderQuota EventKind = "provider.quota"
)

// Event is one record in the append-only event log.
type Event struct {
	ID       int64           `json:"id"`
	Time     time.Time       `json:"time"`
	Kind     EventKind       `json:"kind"`
	Pool     string          `json:"pool,omitempty"`
	WorkerID string          `json:"worker_id,omitempty"`
	TaskID   string          `json:"task_id,omitempty"`
	Message  string          `json:"message"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// LogLine is one line of task or worker output shipped by an agent.
type LogLine struct {
	ID       int64     `json:"id"`
	Time     time.Time `json:"time"`
	WorkerID string    `json:"worker_id,omitempty"`
	TaskID   string    `json:"task_id,omitempty"`
	Stream   string    `json:"stream"` // stdout | stderr | agent
	Line     string    `json:"line"`
}

// BreakerStatus is the state of one placement key's breaker.
type BreakerStatus string

// Breaker states.
const (
	BreakerClosed   BreakerStatus = "closed"
	BreakerOpen     BreakerStatus = "open"
	BreakerHalfOpen BreakerStatus = "half-open"
)

// BreakerOutcome is one start outcome recorded for a placement key.
type BreakerOutcome struct {
	Time    time.Time    `json:"time"`
	Success bool         `json:"success"`
	Class   FailureClass `json:"class,omitempty"`
	Worker  string       `json:"worker,omitempty"`
}

// BreakerState is the persisted state of one placement key's breaker. The
// breaker package owns its semantics; the store only saves and loads it.
type BreakerState struct {
	Key      string        `json:"key"`
	Status   BreakerStatus `json:"status"`
	OpenedAt *time.Time    `json:"opened_at,omitempty"`
	// Until is when an open breaker moves to half-open.
	Until *time.Time `json:"until,omitempty"`
	// Trips counts consecutive trips; the cooldown doubles with each.
	Trips int `json:"trips"`
	// Consecutive counts failures in a row.
	Consecutive int `json:"consecutive"`
	// CanaryWorker is the worker spawned as the half-open probe, if any.
	CanaryWorker string           `json:"canary_worker,omitempty"`
	Reason       string           `json:"reason,omitempty"`
	Outcomes     []BreakerOutcome `json:"outcomes,omitempty"`
	UpdatedAt    time.Time        `json:"updated_at"`
}
