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
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// maxClaimBatch bounds the claims of one ClaimMany call (one store
// transaction); a pass with more claimers makes several calls.
const maxClaimBatch = 512

// Claimer is what the dispatcher claims through (a *Service).
type Claimer interface {
	Claim(ctx context.Context, workerID uuid.UUID, max int) ([]*core.Task, error)
	ClaimMany(ctx context.Context, reqs []ClaimRequest) ([][]*core.Task, error)
	ClaimCompleteMany(ctx context.Context, reqs []ClaimRequest) ([][]core.Lease, [][]*core.Task, error)
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
// A claim may carry its worker's completions (ClaimComplete): the pass
// that first takes it commits them in the transaction of its claims
// (ClaimCompleteMany), so a one-slot agent's task waits for one pass, not
// for a completion flush and then a pass.
//
// A claim is in one of three states, guarded by mu: waiting (in the list),
// taken (the dispatcher is claiming for it; the claimer must wait for the
// result even if its own deadline passes, or the tasks would be granted to
// nobody) and done.
type ClaimDispatcher struct {
	q      Claimer
	parked Gauge
	// latency observes each batch claim's duration in seconds (optional).
	latency Observer
	poll    time.Duration
	logger  *slog.Logger

	mu      sync.Mutex
	waiters []*claimWaiter // in arrival order
	spare   []*claimWaiter // a previous waiters array, reused by the next pass (guarded by mu)
	seq     uint64         // arrival counter
	kick    chan struct{}

	// Scratch of the passes, reused from pass to pass so that a pass over
	// hundreds of parked claims allocates next to nothing of its own
	// (only the goroutine running Run touches them).
	batch, live, keep []*claimWaiter
	reqs              []ClaimRequest
	results           []claimResult
	lost              [][]core.Lease
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
	// complete are the carried completions not committed yet; carried is
	// their outcome once a pass committed them (written by the dispatcher
	// while it holds the claim, read by the claimer once answered or
	// while it is waiting).
	complete []store.TaskCompletion
	carried  *Carried
}

// Carried is the outcome of the completions a claim carried: Lost holds
// their stale leases (nothing changed for those; never nil).
type Carried struct {
	Lost []core.Lease
}

type claimResult struct {
	tasks []*core.Task
	err   error
}

// Observer records one measurement (a prometheus.Histogram fits).
type Observer interface {
	Observe(float64)
}

// ObserveLatency makes the dispatcher report each batch claim's duration,
// in seconds, to o. Call it before Run.
func (d *ClaimDispatcher) ObserveLatency(o Observer) { d.latency = o }

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
	batch, rest := d.batch[:0], d.spare[:0]
	for _, w := range d.waiters {
		if full || w.fresh {
			w.state = taken
			batch = append(batch, w)
		} else {
			rest = append(rest, w)
		}
	}
	clear(d.waiters)
	d.waiters, d.spare = rest, d.waiters[:0]
	d.mu.Unlock()
	d.batch = batch
	defer func() {
		// Drop the references the scratch holds until the next pass.
		clear(d.batch)
		clear(d.live)
		clear(d.keep)
		clear(d.results)
		clear(d.lost)
	}()
	if len(batch) == 0 {
		return
	}

	keep, live := d.keep[:0], d.live[:0]
	defer func() { d.keep, d.live = keep, live }()
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
		results, lost := d.claimChunk(ctx, chunk)
		for i, w := range chunk {
			r := results[i]
			if r.err == nil && len(w.complete) > 0 {
				// Committed: later passes claim only.
				w.complete = nil
				w.carried = &Carried{Lost: lost[i]}
				if w.carried.Lost == nil {
					w.carried.Lost = []core.Lease{}
				}
			}
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

// claimChunk claims for every waiter of chunk with one ClaimMany call (one
// ClaimCompleteMany when some carry completions; lost[i] are then the
// stale leases of chunk[i]'s completions). If that call fails as a whole,
// each waiter is claimed for on its own so it gets its own error (an
// unknown worker must not fail the others).
//
// out and lost are the dispatcher's scratch: valid until the next call.
func (d *ClaimDispatcher) claimChunk(ctx context.Context, chunk []*claimWaiter) (out []claimResult, lost [][]core.Lease) {
	out = scratch(&d.results, len(chunk))
	reqs := scratch(&d.reqs, len(chunk))
	defer clear(reqs) // the completions are not the scratch's to keep
	for i, w := range chunk {
		reqs[i] = ClaimRequest{WorkerID: w.workerID, Max: w.max, Complete: w.complete}
	}
	start := time.Now() // wall time, for the latency metric only
	lost, got, err := d.claimMany(ctx, reqs)
	if lost == nil {
		lost = scratch(&d.lost, len(chunk))
	}
	if d.latency != nil {
		d.latency.Observe(time.Since(start).Seconds())
	}
	if err == nil && len(got) == len(chunk) && len(lost) == len(chunk) {
		for i := range chunk {
			out[i] = claimResult{tasks: got[i]}
		}
		return out, lost
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
		return out, lost
	}
	for i, w := range chunk {
		if len(w.complete) == 0 {
			ts, err := d.q.Claim(ctx, w.workerID, w.max)
			out[i] = claimResult{tasks: ts, err: err}
			continue
		}
		l, got, err := d.q.ClaimCompleteMany(ctx, reqs[i:i+1])
		if err == nil && (len(got) != 1 || len(l) != 1) {
			err = fmt.Errorf("claim for worker %s: got %d results", w.workerID, len(got))
		}
		if err != nil {
			out[i] = claimResult{err: err}
			continue
		}
		out[i], lost[i] = claimResult{tasks: got[0]}, l[0]
	}
	return out, lost
}

// scratch returns (*buf)[:n] zeroed, growing *buf when it is too short.
func scratch[T any](buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n)
	}
	s := (*buf)[:n]
	clear(s)
	return s
}

// claimMany claims for reqs with ClaimMany, or with ClaimCompleteMany when
// some carry completions (lost is nil otherwise).
func (d *ClaimDispatcher) claimMany(ctx context.Context, reqs []ClaimRequest) (lost [][]core.Lease, tasks [][]*core.Task, err error) {
	for _, r := range reqs {
		if len(r.Complete) > 0 {
			return d.q.ClaimCompleteMany(ctx, reqs)
		}
	}
	tasks, err = d.q.ClaimMany(ctx, reqs)
	return nil, tasks, err
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
	tasks, _, err := d.ClaimComplete(ctx, workerID, max, wait, stop, nil)
	return tasks, err
}

// ClaimComplete is Claim for a claim that carries the worker's completions
// (checked by CheckCompletions): the pass that first takes the claim
// commits them in the same transaction as the claims it serves, before
// them. carried is their outcome, or nil when no pass committed them (the
// claimer went away, its wait ended or the dispatcher stopped before its
// first pass, or the pass failed with err): the caller then completes
// them itself, unless err says the pass failed.
func (d *ClaimDispatcher) ClaimComplete(ctx context.Context, workerID uuid.UUID, max int, wait time.Duration, stop <-chan struct{}, complete []store.TaskCompletion) (tasks []*core.Task, carried *Carried, err error) {
	w := &claimWaiter{ctx: ctx, workerID: workerID, max: max, parkable: wait > 0, fresh: true, result: make(chan claimResult, 1)}
	if len(complete) > 0 {
		w.complete = complete
	}
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
		return r.tasks, w.carried, r.err
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
		return nil, w.carried, nil
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
	return r.tasks, w.carried, r.err
}
