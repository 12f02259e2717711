package api

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// claimDispatcher serves long-poll claims. A claim first tries the queue
// directly; when nothing is claimable it parks here. One goroutine wakes on
// the queue's Notify channel (a submit, a retry, a requeue), on a poll
// timer (work that became claimable by time alone) or on a kick, and hands
// tasks to parked claimers in arrival order, one pool at a time: as soon as
// a claim of a pool comes back empty the rest of that pool's claimers keep
// waiting, so a burst of notifications costs at most one empty store call
// per pool instead of one per waiting agent.
//
// A parked claim is in one of three states, guarded by mu: waiting (in the
// list), taken (the dispatcher is claiming for it; the claimer must wait for
// the result even if its own deadline passes, or the tasks would be granted
// to nobody) and done.
type claimDispatcher struct {
	q       Queue
	metrics *metrics
	poll    time.Duration
	logger  *slog.Logger

	mu      sync.Mutex
	waiters []*claimWaiter
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
	pool     string
	max      int
	state    waiterState      // guarded by claimDispatcher.mu
	result   chan claimResult // buffered 1
	// abandoned is set (under mu) by a claimer whose wait ended while the
	// dispatcher held it; the dispatcher then answers it instead of parking
	// it again.
	abandoned bool
}

type claimResult struct {
	tasks []*core.Task
	err   error
}

func newClaimDispatcher(q Queue, m *metrics, poll time.Duration, logger *slog.Logger) *claimDispatcher {
	return &claimDispatcher{q: q, metrics: m, poll: poll, logger: logger, kick: make(chan struct{}, 1)}
}

// wake asks the dispatcher for a pass without blocking.
func (d *claimDispatcher) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *claimDispatcher) run(ctx context.Context) {
	t := time.NewTicker(d.poll)
	defer t.Stop()
	notify := d.q.Notify()
	for {
		select {
		case <-ctx.Done():
			d.releaseAll()
			return
		case <-notify:
		case <-d.kick:
		case <-t.C:
		}
		// Take the next generation before serving: a submit during the
		// pass closes it, and the next select fires at once instead of
		// waiting for the poll.
		notify = d.q.Notify()
		d.serve(ctx)
	}
}

// releaseAll answers every waiting claim with nothing (shutdown).
func (d *claimDispatcher) releaseAll() {
	d.mu.Lock()
	ws := d.waiters
	d.waiters = nil
	for _, w := range ws {
		w.state = done
	}
	d.mu.Unlock()
	for _, w := range ws {
		w.result <- claimResult{}
	}
	d.metrics.claimWaiters.Sub(float64(len(ws)))
}

// serve runs one dispatch pass over the parked claims.
func (d *claimDispatcher) serve(ctx context.Context) {
	d.mu.Lock()
	if len(d.waiters) == 0 {
		d.mu.Unlock()
		return
	}
	batch := d.waiters
	d.waiters = nil
	for _, w := range batch {
		w.state = taken
	}
	d.mu.Unlock()

	exhausted := map[string]bool{}
	var keep, tail []*claimWaiter
	for _, w := range batch {
		if exhausted[w.pool] || ctx.Err() != nil {
			keep = append(keep, w)
			continue
		}
		if w.ctx.Err() != nil {
			d.finish(w, claimResult{})
			continue
		}
		tasks, err := d.q.Claim(ctx, w.workerID, w.max)
		if err != nil && ctx.Err() != nil {
			// Shutting down: answer with nothing rather than an error.
			d.finish(w, claimResult{})
			continue
		}
		if err != nil || len(tasks) > 0 {
			d.finish(w, claimResult{tasks: tasks, err: err})
			continue
		}
		// Nothing for this worker: its pool is drained for now (or this
		// worker may not claim). Move it to the back so another worker of
		// the pool is asked first next time.
		exhausted[w.pool] = true
		tail = append(tail, w)
	}
	keep = append(keep, tail...)
	parked := keep[:0]
	var released int
	d.mu.Lock()
	for _, w := range keep {
		if w.abandoned {
			w.state = done
			w.result <- claimResult{} // buffered: never blocks
			released++
			continue
		}
		w.state = waiting
		parked = append(parked, w)
	}
	// Claims parked during this pass go after the ones that waited longer.
	d.waiters = append(parked, d.waiters...)
	d.mu.Unlock()
	d.metrics.claimWaiters.Sub(float64(released))
}

func (d *claimDispatcher) finish(w *claimWaiter, r claimResult) {
	d.mu.Lock()
	w.state = done
	d.mu.Unlock()
	d.metrics.claimWaiters.Dec()
	w.result <- r
}

// wait parks a claim until tasks are handed to it, wait elapses, ctx ends or
// stop closes. notified is the Notify channel taken before the caller's own
// (empty) claim attempt: if it has fired since, a pass runs at once so a
// submit between that attempt and parking is not missed.
func (d *claimDispatcher) wait(ctx context.Context, workerID uuid.UUID, pool string, max int, wait time.Duration, notified <-chan struct{}, stop <-chan struct{}) ([]*core.Task, error) {
	w := &claimWaiter{ctx: ctx, workerID: workerID, pool: pool, max: max, result: make(chan claimResult, 1)}
	d.mu.Lock()
	d.waiters = append(d.waiters, w)
	d.mu.Unlock()
	d.metrics.claimWaiters.Inc()
	select {
	case <-notified:
		d.wake()
	default:
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case r := <-w.result:
		return r.tasks, r.err
	case <-timer.C:
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
		d.mu.Unlock()
		d.metrics.claimWaiters.Dec()
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
