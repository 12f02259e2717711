// Package queue holds the task rules over the store: validation and
// defaults at submit, claims, fenced completion and failure with retry
// backoff, lease renewal through heartbeats (group-committed), worker
// registration facts, and the leader's periodic maintenance (expired
// leases, attempt timeouts, queue TTL). Package api and the simulator's
// agents call it; it never talks HTTP.
package queue

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// Config holds the task rules. Zero fields take the documented defaults.
type Config struct {
	// MaxAttempts is the default max_attempts of a task (3).
	MaxAttempts int
	// MaxLost is the default max_lost of a task (3).
	MaxLost int
	// DefaultTimeout bounds one attempt when the task names none (6h).
	DefaultTimeout time.Duration
	// TypeTimeouts overrides DefaultTimeout per task type.
	TypeTimeouts map[string]time.Duration
	// StallTimeouts fails a running attempt of a type listed here whose
	// handler reported no progress and wrote no log line for that long
	// (retryable, error core.ReasonStalled). Checked by Maintain.
	StallTimeouts map[string]time.Duration
	// TypePools routes a task without a pool by its type; else "default".
	TypePools map[string]string
	// Pools lists the pools a task may go to (the configured ones): a task
	// for any other pool is rejected. nil accepts every valid pool name.
	Pools []string
	// QueueTTL expires queued tasks older than this (7 days).
	QueueTTL time.Duration
	// OwnerLimit is the running-task limit per owner; 0 means unlimited.
	// Unlike the other fields it is used as given (package config fills the
	// documented default of 5).
	OwnerLimit int
	// MaxQueuedPerOwner caps each owner's queued tasks (ownercap.go); 0
	// means no cap.
	MaxQueuedPerOwner int
	// LeaseDuration is how long a claim or heartbeat keeps a lease alive:
	// the heartbeat timeout (25s).
	LeaseDuration time.Duration
	// BackoffBase and BackoffMax shape retry backoff: base·2^(failures-1)
	// with full jitter in [d/2, d], capped at max (10s, 10m).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// UnreportedGrace: a task a live worker holds, granted longer ago than
	// this, that the worker's heartbeat does not report is released back
	// to queued without counting an attempt (its claim's answer never
	// reached the agent). 0 disables it; package server sets
	// UnreportedGrace(heartbeat_interval, heartbeat_timeout).
	UnreportedGrace time.Duration
	// HeartbeatFlush is the group-commit window for heartbeats (100ms).
	HeartbeatFlush time.Duration
	// RequiresGPU reports whether workers of a pool must have GPUs; nil
	// means no pool requires them.
	RequiresGPU func(pool string) bool
	// OwnerCallbacks maps an owner to the completion webhook URL of its
	// tasks that give no callback_url.
	OwnerCallbacks map[string]string
}

// SubmitRequest is one task to submit, as the API decoded it. Pointer fields
// are optional; nil takes the default.
type SubmitRequest struct {
	Type           string
	Params         json.RawMessage
	Owner          string
	Priority       *int
	Pool           string
	DependsOn      []string // task ids, or "#N" for the Nth task of the same batch
	MaxAttempts    *int
	MaxLost        *int
	Timeout        *time.Duration
	IdempotencyKey string
	// CallbackURL receives the completion webhook (overrides the owner's).
	CallbackURL string
}

// RegisterInfo is what an agent reports when it registers.
type RegisterInfo struct {
	InstanceID   string
	AgentVersion string
	GPUs         []core.GPU
}

// HeartbeatInfo is what an agent reports every heartbeat_interval.
type HeartbeatInfo struct {
	Leases  []core.Lease
	Metrics json.RawMessage
}

// HeartbeatReply carries the server's commands back to the agent.
type HeartbeatReply struct {
	// Drain tells the agent to finish what it holds, claim nothing more and
	// exit.
	Drain bool
	// Stop tells the agent to stop at once (worker failed or terminated).
	Stop bool
	// Lost lists leases the agent must abandon (task cancelled, timed out,
	// or requeued elsewhere): kill the handler, report nothing.
	Lost []core.Lease
}

// MaintainReport summarises one maintenance pass.
type MaintainReport struct {
	Requeued []*core.Task // expired leases requeued or failed as lost
	TimedOut []*core.Task // attempts that exceeded their timeout
	Stalled  []*core.Task // attempts failed by their type's stall_timeout
	Expired  int          // queued tasks past queue_ttl
}

// Service is the queue. It is safe for concurrent use.
//
// Events: the service writes an event for every task failure
// (task.failed), retry (task.retried, including attempt timeouts and
// operator retries), lease-loss requeue (task.requeued), cancel
// (task.cancelled) and queue-TTL expiry (task.expired), batched with the
// heartbeat group commit while Start is running. It deliberately writes no
// event per submit, claim or success: those are the hot path (thousands per
// second), and the task row already records who ran it and when.
//
// Heartbeats: with Start running, heartbeats are group-committed: every
// HeartbeatFlush (or at once when 512 are pending) one worker-state read,
// one TaskLeaseRenew and one WorkerHeartbeatMany serve every waiting agent.
//
// Completions are group-committed without a window: Complete and
// CompleteMany calls that arrive while a commit runs are committed together
// by the next one (one TaskCompleteBatch). ClaimMany runs every claim in one
// TaskClaimBatch.
type Service struct {
	st     store.Store
	clock  core.Clock
	cfg    Config
	logger *slog.Logger

	// rnd draws backoff jitter in [0, 1).
	rnd func() float64

	// notifyMu guards notifyCh, the current generation of Notify.
	notifyMu sync.Mutex
	notifyCh chan struct{}

	// waker is the func(reason string) registered by SetWaker.
	waker atomic.Pointer[func(string)]
	// relay forwards signals to the other replicas (relay.go).
	relay atomic.Pointer[func(string)]

	// pools caches each worker's pool (it never changes) so a claim costs
	// one query, not two.
	pools poolCache
	// claimBufs recycles the store parameters of claim calls
	// (*claimParamsBuf).
	claimBufs sync.Pool

	// mu guards the group-commit state below.
	mu        sync.Mutex
	running   bool
	pending   []*hbRequest
	events    []*core.Event
	full      chan struct{} // signalled when pending reaches hbFullBatch
	cancel    context.CancelFunc
	done      chan struct{}
	flushBase context.Context

	// cmu guards the completion group commit (complete.go).
	cmu       sync.Mutex
	cpending  []*completeRequest
	cflushing bool
}

var _ = uuid.Nil

// poolCache maps worker IDs to their pools. A typed map, unlike a
// sync.Map, looks a UUID up without boxing it (an allocation per claim of
// every pass over the parked claims).
type poolCache struct {
	mu sync.RWMutex
	m  map[uuid.UUID]string
}

// Load returns the cached pool of worker id.
func (c *poolCache) Load(id uuid.UUID) (string, bool) {
	c.mu.RLock()
	p, ok := c.m[id]
	c.mu.RUnlock()
	return p, ok
}

// Store caches pool as worker id's pool.
func (c *poolCache) Store(id uuid.UUID, pool string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[uuid.UUID]string)
	}
	c.m[id] = pool
	c.mu.Unlock()
}
