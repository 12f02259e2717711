// Package provider defines where machines come from: the Provider interface,
// its typed errors and an instrumenting decorator. Implementations live in
// sub-packages: sim (in-memory, for tests and the simulator), local (agent
// processes on this host) and, later, runpod.
package provider

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// InstanceState is a provider-neutral instance state.
type InstanceState string

// Instance states.
const (
	// InstancePending: accepted by the provider, not running yet.
	InstancePending InstanceState = "pending"
	// InstanceRunning: the machine is up (the agent may still be booting).
	InstanceRunning InstanceState = "running"
	// InstanceStopping: being deleted or stopped.
	InstanceStopping InstanceState = "stopping"
	// InstanceGone: deleted, exited or preempted.
	InstanceGone InstanceState = "gone"
)

// Placement is one candidate place to create a worker: a GPU type in a region
// on a cloud tier. Its Key (pool/gpu/region) is the breaker key.
type Placement struct {
	GPU    string `json:"gpu" yaml:"gpu"`
	Region string `json:"region" yaml:"region"`
	Cloud  string `json:"cloud,omitempty" yaml:"cloud"`
}

// Key returns the breaker key of this placement in pool.
func (p Placement) Key(pool string) string {
	return pool + "/" + p.GPU + "/" + p.Region
}

// CreateRequest asks a provider for one instance.
type CreateRequest struct {
	// WorkerID is Drover's worker id; providers put it in the instance name
	// or tags so that List can match instances back to rows.
	WorkerID  string
	Pool      string
	Placement Placement
	Image     string
	// Env is passed to the agent; it carries DROVER_SERVER, DROVER_WORKER_ID
	// and DROVER_TOKEN (a secret: never log it).
	Env map[string]string
}

// Instance is what a provider knows about one machine.
type Instance struct {
	ID           string
	WorkerID     string // from the instance's name/tags; "" if not ours
	Pool         string
	Placement    Placement
	State        InstanceState
	PricePerHour float64
	CreatedAt    time.Time
	// Preempted is true when the provider took the machine back.
	Preempted bool
	// Exited is true when the machine's container stopped on its own
	// (RunPod EXITED or ERROR, a local agent process that ended): the
	// agent is gone and the instance is Gone, but List still returns it
	// because it may still cost money (a stopped pod bills its disk) until
	// it is deleted. The orchestrator fails a live worker on it as
	// agent-exit at once and deletes an exited instance with no live
	// worker as an orphan.
	Exited bool
	// ExitDetail says how the agent ended when Exited ("RunPod status
	// ERROR", "exit status 3"); "" when the provider does not know.
	ExitDetail string
}

// Provider is the small interface every machine source implements (after
// Karpenter's CloudProvider).
type Provider interface {
	// Name returns the provider's name ("sim", "local", "runpod").
	Name() string
	// Create requests one instance and returns it (usually pending).
	Create(ctx context.Context, req *CreateRequest) (*Instance, error)
	// Get returns one instance or an error matching ErrNotFound.
	Get(ctx context.Context, id string) (*Instance, error)
	// List returns every instance Drover owns at this provider (and only
	// those), in any state but gone.
	List(ctx context.Context) ([]*Instance, error)
	// Delete deletes an instance. Deleting a gone instance returns an error
	// matching ErrNotFound, which callers treat as success.
	Delete(ctx context.Context, id string) error
}

// ErrNotFound means the instance does not exist (or no longer does).
var ErrNotFound = errors.New("instance not found")

// Kind classifies provider errors; the orchestrator maps them to worker
// failure classes and breaker actions.
type Kind string

// Error kinds.
const (
	KindCapacity    Kind = "capacity"        // no machines of that type/region now; try the next candidate
	KindQuota       Kind = "quota"           // balance, permission, auth (402/403/401): open the breaker at once
	KindInvalid     Kind = "invalid-request" // the request itself is wrong (400/422)
	KindRateLimited Kind = "rate-limited"    // 429; RetryAfter says when
	KindNotFound    Kind = "not-found"
	KindTransient   Kind = "transient" // 5xx, timeouts, network errors
)

// Error is a typed provider error.
type Error struct {
	Kind       Kind
	Op         string // "create", "get", "list", "delete"
	Message    string
	RetryAfter time.Duration
	// AccountWide marks a quota error that no other placement of the
	// provider can escape (an empty balance, a refused API key): the
	// orchestrator opens every breaker of the provider at once instead
	// of trying the next candidate.
	AccountWide bool
	// MaybeCreated marks a create whose outcome is unknown: the provider
	// answered 5xx or not at all and could not then tell whether the
	// instance exists. The orchestrator keeps the worker row in state
	// requested, so the next good List adopts the instance carrying its
	// worker id or fails the row, and no replacement is spawned meanwhile.
	MaybeCreated bool
	Err          error
}

// Error implements error.
func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s", e.Op, e.Kind)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) true for KindNotFound errors.
func (e *Error) Is(target error) bool {
	return target == ErrNotFound && e.Kind == KindNotFound
}

// KindOf returns the Kind of err: the kind of a wrapped *Error, KindNotFound
// for ErrNotFound, KindTransient otherwise.
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Kind
	}
	if errors.Is(err, ErrNotFound) {
		return KindNotFound
	}
	return KindTransient
}

// IsAccountWide reports whether err is (or wraps) an *Error marked
// AccountWide.
func IsAccountWide(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.AccountWide
}

// MaybeCreated reports whether err is (or wraps) an *Error marked
// MaybeCreated: a create that may have made its instance.
func MaybeCreated(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.MaybeCreated
}

// NewError returns a typed error.
func NewError(op string, kind Kind, format string, args ...any) *Error {
	return &Error{Op: op, Kind: kind, Message: fmt.Sprintf(format, args...)}
}
