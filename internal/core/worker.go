package core

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// WorkerState is the lifecycle state of a worker; see the package doc.
type WorkerState string

// Worker states.
const (
	WorkerRequested    WorkerState = "requested"
	WorkerProvisioning WorkerState = "provisioning"
	WorkerBooting      WorkerState = "booting"
	WorkerReady        WorkerState = "ready"
	WorkerDraining     WorkerState = "draining"
	WorkerTerminating  WorkerState = "terminating"
	WorkerTerminated   WorkerState = "terminated"
	WorkerFailed       WorkerState = "failed"
)

// Live reports whether a worker in state s still has (or may have) an
// instance that costs money and counts toward the pool's size.
func (s WorkerState) Live() bool {
	switch s {
	case WorkerRequested, WorkerProvisioning, WorkerBooting, WorkerReady, WorkerDraining:
		return true
	}
	return false
}

// Valid reports whether s is a known state.
func (s WorkerState) Valid() bool {
	switch s {
	case WorkerRequested, WorkerProvisioning, WorkerBooting, WorkerReady, WorkerDraining,
		WorkerTerminating, WorkerTerminated, WorkerFailed:
		return true
	}
	return false
}

// FailureClass says why a worker failed. Normal scale-down, drain and
// operator termination are not failures and have no class.
type FailureClass string

// Failure classes.
const (
	FailCapacity         FailureClass = "capacity"
	FailQuota            FailureClass = "quota"
	FailInvalidRequest   FailureClass = "invalid-request"
	FailProvisionTimeout FailureClass = "provision-timeout"
	FailBootTimeout      FailureClass = "boot-timeout"
	FailAgentExit        FailureClass = "agent-exit"
	FailHeartbeatLost    FailureClass = "heartbeat-lost"
	FailStuckTask        FailureClass = "stuck-task"
	FailGPUMissing       FailureClass = "gpu-missing"
	FailGPUFault         FailureClass = "gpu-fault"
	FailVanished         FailureClass = "vanished"
	FailPreempted        FailureClass = "preempted"
	FailProvider         FailureClass = "provider-error" // create failed for another reason
)

// GPU describes one GPU as reported by the agent's probe.
type GPU struct {
	Index       int      `json:"index"`
	Name        string   `json:"name"`
	UUID        string   `json:"uuid,omitempty"`
	MemoryMiB   int      `json:"memory_total_mib"`
	MemUsedMiB  *int     `json:"memory_used_mib,omitempty"`
	UtilPercent *int     `json:"utilization_percent,omitempty"`
	TempC       *int     `json:"temperature_c,omitempty"`
	PowerW      *float64 `json:"power_w,omitempty"`
}

// Worker is one rented machine running the Drover agent.
type Worker struct {
	ID         uuid.UUID    `json:"id"`
	Pool       string       `json:"pool"`
	Provider   string       `json:"provider"`
	Placement  string       `json:"placement"` // breaker key: pool/gpu/region
	GPUType    string       `json:"gpu_type,omitempty"`
	Region     string       `json:"region,omitempty"`
	InstanceID string       `json:"instance_id,omitempty"`
	State      WorkerState  `json:"state"`
	Failure    FailureClass `json:"failure,omitempty"`
	Reason     string       `json:"reason,omitempty"`
	// TokenHash is the SHA-256 of the worker's bearer token, hex encoded.
	TokenHash    string          `json:"-"`
	Concurrency  int             `json:"concurrency"`
	PricePerHour float64         `json:"price_per_hour"`
	AgentVersion string          `json:"agent_version,omitempty"`
	GPUs         []GPU           `json:"gpus,omitempty"`
	Metrics      json.RawMessage `json:"metrics,omitempty"`
	TasksDone    int             `json:"tasks_done"`
	TasksFailed  int             `json:"tasks_failed"`
	// Running is the number of tasks this worker holds leases on. It is
	// filled by queries that join the task table; stores do not persist it.
	Running int `json:"running"`

	CreatedAt       time.Time  `json:"created_at"`
	StateChangedAt  time.Time  `json:"state_changed_at"`
	ReadyAt         *time.Time `json:"ready_at,omitempty"`
	LastHeartbeatAt *time.Time `json:"last_heartbeat_at,omitempty"`
	LastTaskAt      *time.Time `json:"last_task_at,omitempty"`
	TerminatedAt    *time.Time `json:"terminated_at,omitempty"`
	// DeleteAttempts counts provider delete calls made while terminating.
	DeleteAttempts int `json:"delete_attempts"`
	// MissingLists counts successive good provider lists that did not show
	// this worker's instance (two in a row → vanished).
	MissingLists int `json:"missing_lists"`
}
