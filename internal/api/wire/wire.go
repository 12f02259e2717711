// Package wire holds the request and response types of Drover's HTTP API
// (version /v1). The server (package api) and the Go client (package
// client) share them, so the two cannot drift. It contains types only, plus
// the JSON codec of Duration; no behaviour.
package wire

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// Aliases of the domain types that travel unchanged over the wire, so that
// users of this package (the client, the agent) need not import core.
type (
	// Task is a task as the API returns it (the lease token is never
	// included; see ClaimedTask).
	Task = core.Task
	// Worker is a worker as the API returns it (never its token hash).
	Worker = core.Worker
	// Event is one event-log record.
	Event = core.Event
	// LogLine is one line of task or worker output.
	LogLine = core.LogLine
	// GPU is one GPU of a worker's inventory.
	GPU = core.GPU
	// Lease is a (task id, lease token) pair.
	Lease = core.Lease
	// TaskState is a task state.
	TaskState = core.TaskState
	// WorkerState is a worker state.
	WorkerState = core.WorkerState
)

// Error codes carried in ErrorBody.Error.Code; each maps to exactly one HTTP
// status (see package api and docs/api.md).
const (
	CodeInvalid      = core.EINVALID      // 400
	CodeNotFound     = core.ENOTFOUND     // 404
	CodeConflict     = core.ECONFLICT     // 409, e.g. a stale lease
	CodeUnauthorized = core.EUNAUTHORIZED // 401
	CodeForbidden    = core.EFORBIDDEN    // 403
	CodeTooLarge     = core.ETOOLARGE     // 413
	CodeUnavailable  = core.EUNAVAILABLE  // 503
	CodeInternal     = core.EINTERNAL     // 500
)

// Body size limits of the API, in bytes. A larger body is rejected with 413
// and changes nothing.
const (
	// MaxSubmitBody bounds POST /v1/tasks: 1 MiB of params plus the rest.
	MaxSubmitBody = 2 << 20
	// MaxBatchBody bounds POST /v1/tasks/batch.
	MaxBatchBody = 64 << 20
	// MaxCompleteBody bounds POST /v1/tasks/{id}/complete: 1 MiB of result
	// plus the rest.
	MaxCompleteBody = 2 << 20
	// MaxLogsBody bounds POST /v1/workers/{id}/logs.
	MaxLogsBody = 4 << 20
	// MaxBody bounds every other request body.
	MaxBody = 1 << 20
	// MaxBatchTasks is the most tasks one batch submit may hold.
	MaxBatchTasks = 1000
	// MaxLogLines is the most lines one logs request may hold.
	MaxLogLines = 10000
	// MaxLogLineBytes is the longest accepted log line.
	MaxLogLineBytes = 64 << 10
	// MaxCompleteBatchBody bounds POST /v1/workers/{id}/complete.
	MaxCompleteBatchBody = 64 << 20
	// MaxClaim is the most tasks one claim (or one batched completion) may
	// carry.
	MaxClaim = 100
	// MaxClaimWait is the longest a claim long-poll waits.
	MaxClaimWait = 30 * time.Second
	// MaxHeartbeatLeases is the most leases one heartbeat may carry.
	MaxHeartbeatLeases = 1000
)

// ErrorBody is the body of every non-2xx response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes one error. Field names the offending input field
// when there is one (e.g. "tasks[3].priority").
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Duration is a time.Duration that travels as a Go duration string ("30s",
// "6h"). On input a JSON number is read as whole seconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		v, err := time.ParseDuration(str)
		if err != nil {
			// An UnmarshalTypeError gets the field path filled in by
			// encoding/json, so the API can name the field.
			return &json.UnmarshalTypeError{Value: "string " + strconv.Quote(str), Type: reflect.TypeFor[Duration]()}
		}
		*d = Duration(v)
		return nil
	}
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return &json.UnmarshalTypeError{Value: s, Type: reflect.TypeFor[Duration]()}
	}
	const maxSecs = float64(1<<63-1) / float64(time.Second)
	if secs > maxSecs || secs < -maxSecs {
		return fmt.Errorf("duration out of range: %s seconds", s)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// --- worker endpoints ---

// RegisterRequest is the body of POST /v1/workers/{id}/register.
type RegisterRequest struct {
	InstanceID   string `json:"instance_id,omitempty"`
	AgentVersion string `json:"agent_version,omitempty"`
	GPUs         []GPU  `json:"gpus,omitempty"`
}

// RegisterResponse is the agent's configuration.
type RegisterResponse struct {
	WorkerID string `json:"worker_id"`
	Pool     string `json:"pool"`
	// HeartbeatInterval is how often the agent must beat.
	HeartbeatInterval Duration `json:"heartbeat_interval"`
	// HeartbeatTimeout is when the server declares the worker lost; it is
	// also the lease duration of claimed tasks.
	HeartbeatTimeout Duration `json:"heartbeat_timeout"`
	// LeaseDuration is how long a claim or heartbeat keeps a lease alive.
	LeaseDuration Duration `json:"lease_duration"`
	// Concurrency is how many tasks the agent may run at once.
	Concurrency int `json:"concurrency"`
	// ClaimWait is the long-poll wait the agent should ask for.
	ClaimWait Duration `json:"claim_wait"`
	// ServerLostTimeoutS is the agent's dead man's switch, in seconds:
	// after this long without an answer from the server the agent kills
	// its handlers and exits non-zero. 0 (an older server): the agent uses
	// 4 × heartbeat_timeout.
	ServerLostTimeoutS float64 `json:"server_lost_timeout_s,omitempty"`
}

// TaskProgress is a progress report of one held task.
type TaskProgress struct {
	TaskID     uuid.UUID `json:"task_id"`
	LeaseToken uuid.UUID `json:"lease_token"`
	// Progress is a fraction in [0,1], or nil when unknown.
	Progress *float64 `json:"progress,omitempty"`
	Message  string   `json:"message,omitempty"`
}

// HeartbeatRequest is the body of POST /v1/workers/{id}/heartbeat.
type HeartbeatRequest struct {
	// Leases are the leases the agent holds; the heartbeat renews them.
	Leases []Lease `json:"leases"`
	// Metrics is free-form agent metrics (GPU utilisation, memory, temperature).
	Metrics json.RawMessage `json:"metrics,omitempty"`
	// Progress optionally reports progress of held tasks.
	Progress []TaskProgress `json:"progress,omitempty"`
}

// HeartbeatResponse carries the server's commands.
type HeartbeatResponse struct {
	// Drain: finish held tasks, claim nothing more, exit.
	Drain bool `json:"drain"`
	// Stop: stop at once (the worker failed or is being terminated).
	Stop bool `json:"stop"`
	// LostLeases must be abandoned: kill the handler, report nothing.
	LostLeases []Lease `json:"lost_leases"`
}

// ClaimRequest is the (optional) body of POST /v1/workers/{id}/claim; the
// long-poll wait is the query parameter wait (e.g. ?wait=30s, at most 30s).
type ClaimRequest struct {
	// Max is how many tasks to claim (1..MaxClaim; default 1).
	Max int `json:"max,omitempty"`
	// Complete reports finished tasks in the same request: the items of
	// POST /v1/workers/{id}/complete, validated the same way. The server
	// commits them before it claims, so their slots count as free.
	Complete []CompleteItem `json:"complete,omitempty"`
}

// ClaimedTask is a task granted to the caller together with its lease token.
type ClaimedTask struct {
	Task
	LeaseToken uuid.UUID `json:"lease_token"`
}

// MarshalJSON writes the task's JSON form plus lease_token in one pass
// (the embedded Task's MarshalJSON would otherwise be the whole encoding).
func (c ClaimedTask) MarshalJSON() ([]byte, error) {
	return c.AppendJSON(make([]byte, 0, 576))
}

// AppendJSON appends what MarshalJSON writes to b.
func (c *ClaimedTask) AppendJSON(b []byte) ([]byte, error) {
	b, err := c.Task.AppendJSON(b)
	if err != nil {
		return nil, err
	}
	b = append(b[:len(b)-1], `,"lease_token":"`...)
	b = append(b, c.LeaseToken.String()...)
	return append(b, `"}`...), nil
}

// UnmarshalJSON reads what MarshalJSON writes, in one decoding pass.
func (c *ClaimedTask) UnmarshalJSON(b []byte) error {
	return core.DecodeTaskJSON(b, &c.Task, &c.LeaseToken)
}

// Lease returns the task's (id, token) lease.
func (c *ClaimedTask) Lease() Lease { return Lease{TaskID: c.ID, Token: c.LeaseToken} }

// ClaimResponse lists the claimed tasks (empty when the wait ran out).
type ClaimResponse struct {
	Tasks []ClaimedTask `json:"tasks"`
	// Complete is the outcome of the request's completions (present only
	// when the request carried some): the same reply as
	// POST /v1/workers/{id}/complete.
	Complete *CompleteBatchResponse `json:"complete,omitempty"`
}

// AppendJSON appends the bytes json.Marshal writes for r to b, without
// reflection (the server answers every claim with it).
func (r *ClaimResponse) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"tasks":`...)
	if r.Tasks == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Tasks {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = r.Tasks[i].AppendJSON(b); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	if r.Complete != nil {
		c, err := json.Marshal(r.Complete)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"complete":`...)
		b = append(b, c...)
	}
	return append(b, '}'), nil
}

// CompleteRequest is the body of POST /v1/tasks/{id}/complete.
type CompleteRequest struct {
	WorkerID   uuid.UUID       `json:"worker_id"`
	LeaseToken uuid.UUID       `json:"lease_token"`
	Result     json.RawMessage `json:"result,omitempty"`
	// Outputs is the manifest of the files uploaded for this attempt
	// (see docs/outputs.md); the server verifies it before the task
	// succeeds.
	Outputs []OutputEntry `json:"outputs,omitempty"`
}

// CompleteItem is one task of a batched completion.
type CompleteItem struct {
	TaskID     uuid.UUID       `json:"task_id"`
	LeaseToken uuid.UUID       `json:"lease_token"`
	Result     json.RawMessage `json:"result,omitempty"`
	// Outputs is the task's outputs manifest, verified like
	// CompleteRequest.Outputs.
	Outputs []OutputEntry `json:"outputs,omitempty"`
}

// CompleteBatchRequest is the body of POST /v1/workers/{id}/complete: a
// worker with several slots completes what it finished in one request (and
// one transaction).
type CompleteBatchRequest struct {
	Items []CompleteItem `json:"items"`
}

// CompleteBatchResponse lists the items whose lease was stale; they changed
// nothing, every other item succeeded.
type CompleteBatchResponse struct {
	Lost []Lease `json:"lost"`
}

// FailRequest is the body of POST /v1/tasks/{id}/fail.
type FailRequest struct {
	WorkerID   uuid.UUID `json:"worker_id"`
	LeaseToken uuid.UUID `json:"lease_token"`
	Error      string    `json:"error"`
	Retryable  bool      `json:"retryable"`
}

// ProgressRequest is the body of POST /v1/tasks/{id}/progress.
type ProgressRequest struct {
	WorkerID   uuid.UUID `json:"worker_id"`
	LeaseToken uuid.UUID `json:"lease_token"`
	Progress   *float64  `json:"progress,omitempty"`
	Message    string    `json:"message,omitempty"`
}

// LogsRequest is the body of POST /v1/workers/{id}/logs.
type LogsRequest struct {
	Lines []LogLineIn `json:"lines"`
}

// LogLineIn is one shipped line. Time defaults to the server's clock.
type LogLineIn struct {
	Time   time.Time `json:"time,omitzero"`
	TaskID string    `json:"task_id,omitempty"`
	Stream string    `json:"stream"` // stdout | stderr | agent
	Line   string    `json:"line"`
}

// OK is the body of requests that return nothing else.
type OK struct {
	OK bool `json:"ok"`
}

// --- operator endpoints ---

// SubmitRequest is one task to submit: the body of POST /v1/tasks and an
// item of BatchSubmitRequest. Omitted fields take the server's defaults.
type SubmitRequest struct {
	Type     string          `json:"type"`
	Params   json.RawMessage `json:"params,omitempty"`
	Owner    string          `json:"owner,omitempty"`
	Priority *int            `json:"priority,omitempty"`
	Pool     string          `json:"pool,omitempty"`
	// DependsOn holds task ids, or "#N" for the Nth task of the same batch.
	DependsOn      []string  `json:"depends_on,omitempty"`
	MaxAttempts    *int      `json:"max_attempts,omitempty"`
	MaxLost        *int      `json:"max_lost,omitempty"`
	Timeout        *Duration `json:"timeout,omitempty"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	// CallbackURL receives a signed POST when the task is final.
	CallbackURL string `json:"callback_url,omitempty"`
	// TimeoutS is the timeout in seconds, as task JSON shows it; give
	// timeout or timeout_s, not both.
	TimeoutS *float64 `json:"timeout_s,omitempty"`
}

// SubmitResponse is the result of one submit. Existing is true when a task
// with the same owner and idempotency key already existed and was returned
// instead of inserting.
type SubmitResponse struct {
	Task     *Task `json:"task"`
	Existing bool  `json:"existing"`
}

// AppendJSON appends the bytes json.Marshal writes for r to b, without
// reflection.
func (r *SubmitResponse) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"task":`...)
	if r.Task == nil {
		b = append(b, "null"...)
	} else {
		var err error
		if b, err = r.Task.AppendJSON(b); err != nil {
			return nil, err
		}
	}
	b = append(b, `,"existing":`...)
	b = strconv.AppendBool(b, r.Existing)
	return append(b, '}'), nil
}

// BatchSubmitRequest is the body of POST /v1/tasks/batch (all or nothing).
type BatchSubmitRequest struct {
	Tasks []SubmitRequest `json:"tasks"`
}

// BatchSubmitResponse lists the results in input order.
type BatchSubmitResponse struct {
	Results []SubmitResponse `json:"results"`
}

// AppendJSON appends the bytes json.Marshal writes for r to b, without
// reflection (a batch answers up to 1,000 tasks).
func (r *BatchSubmitResponse) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"results":`...)
	if r.Results == nil {
		return append(b, "null}"...), nil
	}
	b = append(b, '[')
	for i := range r.Results {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = r.Results[i].AppendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

// TaskFilter is the query of GET /v1/tasks.
type TaskFilter struct {
	States   []TaskState
	Owner    string
	Pool     string
	Type     string
	WorkerID string
	// Before pages backwards: tasks created before this task id.
	Before string
	Limit  int
}

// TaskList is the body of GET /v1/tasks.
type TaskList struct {
	Tasks []*Task `json:"tasks"`
}

// WorkerFilter is the query of GET /v1/workers.
type WorkerFilter struct {
	States []WorkerState
	Pool   string
	// Live selects workers that still have (or may have) an instance.
	Live  bool
	Limit int
}

// WorkerList is the body of GET /v1/workers.
type WorkerList struct {
	Workers []*Worker `json:"workers"`
}

// WorkerActionRequest is the optional body of POST
// /v1/workers/{id}/drain and /terminate.
type WorkerActionRequest struct {
	Reason string `json:"reason,omitempty"`
}

// EventFilter is the query of GET /v1/events.
type EventFilter struct {
	Kinds    []string
	Pool     string
	WorkerID string
	TaskID   string
	Since    time.Time
	BeforeID int64
	Limit    int
}

// EventList is the body of GET /v1/events (newest first).
type EventList struct {
	Events []*Event `json:"events"`
}

// LogFilter is the query of GET /v1/logs; one of TaskID or WorkerID is
// required.
type LogFilter struct {
	TaskID   string
	WorkerID string
	AfterID  int64
	Limit    int
}

// LogList is the body of GET /v1/logs (oldest first).
type LogList struct {
	Lines []*LogLine `json:"lines"`
}

// LeaseHolder returns the worker and lease token a complete call presents.
func (r *CompleteRequest) LeaseHolder() (workerID, token uuid.UUID) { return r.WorkerID, r.LeaseToken }

// LeaseHolder returns the worker and lease token a fail call presents.
func (r *FailRequest) LeaseHolder() (workerID, token uuid.UUID) { return r.WorkerID, r.LeaseToken }

// LeaseHolder returns the worker and lease token a progress call presents.
func (r *ProgressRequest) LeaseHolder() (workerID, token uuid.UUID) { return r.WorkerID, r.LeaseToken }
