package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// maxClaimBatch bounds the claims of one ClaimMany call (one store
// transaction); a pass with more claimers makes several calls.
const maxClaimBatch = 512

// Claimer is what the dispatcher claims through (a *Service).
type Claimer interface {
	Claim(ctx context.Context, workerID uuid.UUID, max int) ([]*core.Task, error)
	ClaimMany(ctx context.Context, reqs []ClaimRequest) ([][]*core.Task, error)
	Notify() <-chan struct{}
}

// Gauge counts the parked claims (a prometheus.Gauge fits).
type Gauge interface {
	Add(float64)
	Sub(float64)
	Dec()
}

// ClaimDispatcher is the claims' group-commit batcher: it serves every
// claim, fresh or long-polling. A claim joins
// the dispatcher's list and wakes it; one goroutine runs passes, and each
// pass serves every claimer it takes with ONE queue.ClaimMany call (one
// store transaction, one commit, for any number of agents). Claims that
// arrive while a pass runs wait for the next pass: natural group commit,
// with no added delay when idle.
//
// A claim whose first attempt gets nothing parks (when it may wait). Parked
// claims are retried only by a full pass: on the queue's Notify channel (a
// submit, a retry, a requeue), on the poll timer (work that became
// claimable by time alone); a pass started only because new claims arrived
// (a kick) serves just those, so idle parked agents cost nothing per
// arriving claim. Claimers are served in arrival order (parked ones first,
// they waited longer), so a burst of notifications costs one store call per
// pass instead of one per waiting agent.
//
// A claim is in one of three states, guarded by mu: waiting (in the list),
// taken (the dispatcher is claiming for it; the claimer must wait for the
// result even if its own deadline passes, or the tasks would be granted to
// nobody) and done.
type ClaimDispatcher struct {
	q      Claimer
	parked Gauge
	poll   time.Duration
	logger *slog.Logger

	mu      sync.Mutex
	waiters []*claimWaiter // in arrival order
	seq     uint64         // arrival counter
	kick    chan struct{}
}

type waiterState int

const (
	waiting waiterState = iota
	taken
	done
)

type claimWaiter struct {
	// ctx is the claimer's request context: a claimer that went away is
	// not claimed for.
	ctx      context.Context
	workerID uuid.UUID
	max      int
	seq      uint64 // arrival order
	// parkable is whether the claim may wait when its first attempt gets
	// nothing (a long poll).
	parkable bool
	// fresh is true until the first attempt; parked (counted in the
	// claim_waiters gauge) is true while it waits after an empty attempt.
	fresh, parked bool
	state         waiterState      // guarded by ClaimDispatcher.mu
	result        chan claimResult // buffered 1
	// abandoned is set (under mu) by a claimer whose wait ended while the
	// dispatcher held it; the dispatcher then answers it instead of parking
	// it again.
	abandoned bool
}

type claimResult struct {
	tasks []*core.Task
	err   error
}

// NewClaimDispatcher returns a dispatcher claiming through q that retries
// parked claims at least every poll; waiters counts the parked claims.
// Run must be running for claims to be served.
func NewClaimDispatcher(q Claimer, poll time.Duration, waiters Gauge, logger *slog.Logger) *ClaimDispatcher {
	if logger == nil {
		logger = slog.Default()
	}
	return &ClaimDispatcher{q: q, parked: waiters, poll: poll, logger: logger, kick: make(chan struct{}, 1)}
}

// wake asks the dispatcher for a pass without blocking.
func (d *ClaimDispatcher) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run serves claims until ctx ends; then every waiting claim is answered
// with nothing.
func (d *ClaimDispatcher) Run(ctx context.Context) {
	t := time.NewTicker(d.poll)
	defer t.Stop()
	notify := d.q.Notify()
	for {
		full := true
		select {
		case <-ctx.Done():
			d.releaseAll()
			return
		case <-notify:
		case <-d.kick:
			// A submit that closed notify at the same moment must still
			// get a full pass, or parked claims would wait for the poll.
			select {
			case <-notify:
			default:
				full = false
			}
		case <-t.C:
		}
		// Take the next generation before serving: a submit during the
		// pass closes it, and the next select fires at once instead of
		// waiting for the poll.
		notify = d.q.Notify()
		d.serve(ctx, full)
	}
}

// releaseAll answers every waiting claim with nothing (shutdown).
func (d *ClaimDispatcher) releaseAll() {
	d.mu.Lock()
	ws := d.waiters
	d.waiters = nil
	var parked int
	for _, w := range ws {
		w.state = done
		if w.parked {
			parked++
		}
	}
	d.mu.Unlock()
	for _, w := range ws {
		w.result <- claimResult{}
	}
	d.parked.Sub(float64(parked))
}

// serve runs one dispatch pass: a full pass serves every claim, a kick
// pass only the fresh ones.
func (d *ClaimDispatcher) serve(ctx context.Context, full bool) {
	d.mu.Lock()
	var batch, rest []*claimWaiter
	for _, w := range d.waiters {
		if full || w.fresh {
			w.state = taken
			batch = append(batch, w)
		} else {
			rest = append(rest, w)
		}
	}
	d.waiters = rest
	d.mu.Unlock()
	if len(batch) == 0 {
		return
	}

	var keep []*claimWaiter
	live := batch[:0:0]
	for _, w := range batch {
		switch {
		case ctx.Err() != nil:
			keep = append(keep, w)
		case w.ctx.Err() != nil:
			d.finish(w, claimResult{})
		default:
			live = append(live, w)
		}
	}
	for start := 0; start < len(live); start += maxClaimBatch {
		chunk := live[start:min(start+maxClaimBatch, len(live))]
		results := d.claimChunk(ctx, chunk)
		for i, w := range chunk {
			r := results[i]
			switch {
			case r.err != nil && ctx.Err() != nil:
				// Shutting down: answer with nothing rather than an error.
				d.finish(w, claimResult{})
			case r.err != nil || len(r.tasks) > 0 || !w.parkable:
				d.finish(w, r)
			default:
				keep = append(keep, w)
			}
		}
	}

	var parkedNow, released int
	d.mu.Lock()
	parked := keep[:0]
	for _, w := range keep {
		w.fresh = false
		if w.abandoned {
			w.state = done
			if w.parked {
				released++
			}
			w.result <- claimResult{} // buffered: never blocks
			continue
		}
		if !w.parked {
			w.parked = true
			parkedNow++
		}
		w.state = waiting
		parked = append(parked, w)
	}
	// Keep arrival order: parked claims that sat this pass out, claims
	// that arrived during it and the ones just served are interleaved.
	d.waiters = append(d.waiters, parked...)
	slices.SortFunc(d.waiters, func(a, b *claimWaiter) int { return cmp.Compare(a.seq, b.seq) })
	d.mu.Unlock()
	d.parked.Add(float64(parkedNow - released))
}

// claimChunk claims for every waiter of chunk with one ClaimMany call. If
// that call fails as a whole, each waiter is claimed for on its own so it
// gets its own error (an unknown worker must not fail the others).
func (d *ClaimDispatcher) claimChunk(ctx context.Context, chunk []*claimWaiter) []claimResult {
	out := make([]claimResult, len(chunk))
	reqs := make([]ClaimRequest, len(chunk))
	for i, w := range chunk {
		reqs[i] = ClaimRequest{WorkerID: w.workerID, Max: w.max}
	}
	got, err := d.q.ClaimMany(ctx, reqs)
	if err == nil && len(got) == len(chunk) {
		for i := range chunk {
			out[i] = claimResult{tasks: got[i]}
		}
		return out
	}
	if err == nil {
		err = fmt.Errorf("claim for %d workers: got %d results", len(chunk), len(got))
	}
	// Only an application error (bad input, detected before anything was
	// written) is safe to retry claimer by claimer. A database error may
	// have come after the commit, and claiming again would grant a second
	// set of tasks while the first sat unused until their leases expired.
	if _, appErr := errors.AsType[*core.Error](err); !appErr || len(chunk) == 1 {
		for i := range out {
			out[i] = claimResult{err: err}
		}
		return out
	}
	for i, w := range chunk {
		ts, err := d.q.Claim(ctx, w.workerID, w.max)
		out[i] = claimResult{tasks: ts, err: err}
	}
	return out
}

func (d *ClaimDispatcher) finish(w *claimWaiter, r claimResult) {
	d.mu.Lock()
	w.state = done
	wasParked := w.parked
	d.mu.Unlock()
	if wasParked {
		d.parked.Dec()
	}
	w.result <- r
}

// Claim claims up to max tasks for a worker through the dispatcher. When
// the first attempt gets nothing and wait > 0 the claim parks until tasks
// are handed to it, wait elapses, ctx ends or stop closes.
func (d *ClaimDispatcher) Claim(ctx context.Context, workerID uuid.UUID, max int, wait time.Duration, stop <-chan struct{}) ([]*core.Task, error) {
	w := &claimWaiter{ctx: ctx, workerID: workerID, max: max, parkable: wait > 0, fresh: true, result: make(chan claimResult, 1)}
	d.mu.Lock()
	d.seq++
	w.seq = d.seq
	d.waiters = append(d.waiters, w)
	d.mu.Unlock()
	d.wake()
	var timeout <-chan time.Time
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case r := <-w.result:
		return r.tasks, r.err
	case <-timeout:
	case <-ctx.Done():
	case <-stop:
	}
	d.mu.Lock()
	if w.state == waiting {
		for i, x := range d.waiters {
			if x == w {
				d.waiters = append(d.waiters[:i], d.waiters[i+1:]...)
				break
			}
		}
		w.state = done
		wasParked := w.parked
		d.mu.Unlock()
		if wasParked {
			d.parked.Dec()
		}
		return nil, nil
	}
	// The dispatcher is claiming for us right now: take what it gets (it
	// answers at once with nothing if it gets nothing).
	w.abandoned = true
	d.mu.Unlock()
	r := <-w.result
	if len(r.tasks) > 0 && ctx.Err() != nil {
		d.logger.WarnContext(context.WithoutCancel(ctx), "claimed tasks for a claimer that went away; their leases will expire and be requeued",
			slog.String("worker_id", workerID.String()), slog.Int("tasks", len(r.tasks)))
	}
	return r.tasks, r.err
}
