package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// hbFullBatch is the number of pending heartbeats that triggers a flush
// before the HeartbeatFlush window ends, so a burst of agents never waits
// on a window that is already full.
const hbFullBatch = 512

// flushTimeout bounds one group commit. The flusher's writes must not die
// with the caller that happened to trigger them.
const flushTimeout = 15 * time.Second

// hbRequest is one heartbeat waiting for its group commit.
type hbRequest struct {
	workerID uuid.UUID
	info     HeartbeatInfo
	// ctx is the caller's: a heartbeat whose caller has given up (the
	// agent timed out on a slow or paused replica) may be older than the
	// agent's latest claim, so it never releases a grant.
	ctx   context.Context
	reply chan hbResult // buffered 1: the flusher never blocks
}

type hbResult struct {
	reply HeartbeatReply
	err   error
}

// Start runs the heartbeat group-commit flusher until ctx ends or Stop is
// called. It returns immediately. Every HeartbeatFlush (or at once when
// 512 heartbeats are pending) the flusher commits all pending heartbeats
// with one TaskLeaseRenew and one WorkerHeartbeatMany, and writes the
// pending events in one EventInsertMany.
func (s *Service) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	s.running = true
	s.cancel = cancel
	s.done = make(chan struct{})
	s.flushBase = context.WithoutCancel(ctx)
	go s.flusher(ctx, s.done)
}

// Stop stops the flusher after it has committed everything pending. It is
// idempotent; heartbeats arriving afterwards are committed one by one.
func (s *Service) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel = nil
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (s *Service) flusher(ctx context.Context, done chan struct{}) {
	defer close(done)
	ticker := time.NewTicker(s.cfg.HeartbeatFlush)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.running = false
			s.mu.Unlock()
			s.flushOnce() // whatever arrived before running went false
			return
		case <-ticker.C:
		case <-s.full:
		}
		s.flushOnce()
	}
}

// flushOnce commits the pending heartbeats and events.
func (s *Service) flushOnce() {
	s.mu.Lock()
	batch, evs := s.pending, s.events
	s.pending, s.events = nil, nil
	base := s.flushBase
	s.mu.Unlock()
	if len(batch) == 0 && len(evs) == 0 {
		return
	}
	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithTimeout(base, flushTimeout)
	defer cancel()
	if len(batch) > 0 {
		s.commitHeartbeats(ctx, batch)
	}
	if len(evs) > 0 {
		s.writeEvents(ctx, evs)
	}
}

// Heartbeat records a worker's heartbeat, renews the leases it holds and
// returns its commands. With the flusher running, the call waits for the
// next group commit (at most HeartbeatFlush). Unknown workers get
// core.ErrNotFound; a draining worker gets Drain; a failed, terminating or
// terminated worker gets Stop and its leases are not renewed.
func (s *Service) Heartbeat(ctx context.Context, workerID uuid.UUID, hb HeartbeatInfo) (HeartbeatReply, error) {
	req := &hbRequest{workerID: workerID, info: hb, ctx: ctx, reply: make(chan hbResult, 1)}
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		s.commitHeartbeats(ctx, []*hbRequest{req})
		r := <-req.reply
		return r.reply, r.err
	}
	s.pending = append(s.pending, req)
	if len(s.pending) >= hbFullBatch {
		select {
		case s.full <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	select {
	case r := <-req.reply:
		return r.reply, r.err
	case <-ctx.Done():
		return HeartbeatReply{}, fmt.Errorf("heartbeat of worker %s: %w", workerID, context.Cause(ctx))
	}
}

// commitHeartbeats is one group commit. It reads the workers' states in one
// query, renews the leases of live workers in one TaskLeaseRenew, records
// the heartbeats in one WorkerHeartbeatMany and answers every request.
func (s *Service) commitHeartbeats(ctx context.Context, batch []*hbRequest) {
	fail := func(reqs []*hbRequest, err error) {
		for _, r := range reqs {
			r.reply <- hbResult{err: err}
		}
	}
	states, err := s.workerStates(ctx, batch)
	if err != nil {
		fail(batch, fmt.Errorf("heartbeat: %w", err))
		return
	}
	now := s.clock.Now()
	var (
		live   []*hbRequest
		leases []store.WorkerLease
		beats  []store.WorkerHeartbeatParams
		seen   = map[uuid.UUID]int{}
		// An agent beating several times in one window presents the same
		// leases each time: renew each once.
		seenLease = map[store.WorkerLease]bool{}
	)
	for _, r := range batch {
		f, ok := states[r.workerID]
		st := f.state
		switch {
		case !ok:
			r.reply <- hbResult{err: fmt.Errorf("heartbeat of worker %s: %w", r.workerID, core.ErrNotFound)}
		case st == core.WorkerFailed || st == core.WorkerTerminating || st == core.WorkerTerminated:
			r.reply <- hbResult{reply: HeartbeatReply{Stop: true}}
		default:
			live = append(live, r)
			for _, l := range r.info.Leases {
				wl := store.WorkerLease{WorkerID: r.workerID, Lease: l}
				if !seenLease[wl] {
					seenLease[wl] = true
					leases = append(leases, wl)
				}
			}
			// One heartbeat row write per worker even if it beat twice in
			// the window; the latest metrics win.
			if i, dup := seen[r.workerID]; dup {
				if len(r.info.Metrics) > 0 {
					beats[i].Metrics = r.info.Metrics
				}
				continue
			}
			seen[r.workerID] = len(beats)
			beats = append(beats, store.WorkerHeartbeatParams{Now: now, ID: r.workerID, Metrics: r.info.Metrics})
		}
	}
	if len(live) == 0 {
		return
	}
	// The lease renewal (tasks) and the heartbeat rows (workers) touch
	// different tables: run them side by side, two round trips in the time
	// of one.
	beatErr := make(chan error, 1)
	go func() { beatErr <- s.st.WorkerHeartbeat(ctx, beats) }()
	lostSet := map[core.Lease]bool{}
	var renewErr error
	if len(leases) > 0 {
		lost, err := s.st.TaskLeaseRenew(ctx, &store.TaskLeaseRenewParams{Now: now, Until: now.Add(s.cfg.LeaseDuration), Leases: leases})
		renewErr = err
		for _, l := range lost {
			lostSet[l] = true
		}
	}
	if err := <-beatErr; err != nil {
		fail(live, fmt.Errorf("heartbeat: record %d heartbeats: %w", len(beats), err))
		return
	}
	if renewErr != nil {
		fail(live, fmt.Errorf("heartbeat: renew %d leases: %w", len(leases), renewErr))
		return
	}
	for _, r := range live {
		rep := HeartbeatReply{Drain: states[r.workerID].state == core.WorkerDraining}
		for _, l := range r.info.Leases {
			if lostSet[l] {
				rep.Lost = append(rep.Lost, l)
			}
		}
		r.reply <- hbResult{reply: rep}
	}
	if workers, reported := unreportedCandidates(live, states, lostSet); len(workers) > 0 {
		s.releaseUnreported(ctx, now, workers, reported)
	}
}

// unreportedCandidates returns the workers of a group commit that hold
// more tasks than their heartbeats report (the only ones worth a look for
// grants that never reached them), with the leases each reported. Only
// heartbeats whose caller still waits count: an abandoned one may predate
// the worker's latest claim.
func unreportedCandidates(live []*hbRequest, states map[uuid.UUID]workerFacts, lost map[core.Lease]bool) ([]uuid.UUID, map[uuid.UUID]map[core.Lease]bool) {
	reported := map[uuid.UUID]map[core.Lease]bool{}
	for _, r := range live {
		if r.ctx != nil && r.ctx.Err() != nil {
			continue
		}
		m := reported[r.workerID]
		if m == nil {
			m = map[core.Lease]bool{}
			reported[r.workerID] = m
		}
		for _, l := range r.info.Leases {
			if !lost[l] {
				m[l] = true
			}
		}
	}
	var workers []uuid.UUID
	for id, m := range reported {
		if states[id].running > len(m) {
			workers = append(workers, id)
		}
	}
	return workers, reported
}

// workerFacts is what a heartbeat group commit reads of each worker.
type workerFacts struct {
	state   core.WorkerState
	running int
}

// workerStates returns the state of every worker in batch that exists, in
// one query that reads only the batch's workers.
func (s *Service) workerStates(ctx context.Context, batch []*hbRequest) (map[uuid.UUID]workerFacts, error) {
	states := make(map[uuid.UUID]workerFacts, len(batch))
	if len(batch) == 1 {
		w, err := s.st.WorkerGet(ctx, batch[0].workerID)
		if errors.Is(err, core.ErrNotFound) {
			return states, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read worker %s: %w", batch[0].workerID, err)
		}
		states[w.ID] = workerFacts{state: w.State, running: w.Running}
		return states, nil
	}
	ids := make([]uuid.UUID, 0, len(batch))
	seen := make(map[uuid.UUID]bool, len(batch))
	for _, r := range batch {
		if !seen[r.workerID] {
			seen[r.workerID] = true
			ids = append(ids, r.workerID)
		}
	}
	ws, err := s.st.WorkerList(ctx, &store.WorkerListParams{IDs: ids})
	if err != nil {
		return nil, fmt.Errorf("read states of %d workers: %w", len(ids), err)
	}
	for _, w := range ws {
		states[w.ID] = workerFacts{state: w.State, running: w.Running}
	}
	return states, nil
}

// emit records events. With the flusher running they are written with the
// next group commit, so a burst of failures costs one insert; otherwise at
// once. Event writes are best effort: a failure is logged, never returned,
// because the state change they describe has already been committed.
func (s *Service) emit(ctx context.Context, evs ...*core.Event) {
	if len(evs) == 0 {
		return
	}
	s.mu.Lock()
	if s.running {
		s.events = append(s.events, evs...)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.writeEvents(context.WithoutCancel(ctx), evs)
}

func (s *Service) writeEvents(ctx context.Context, evs []*core.Event) {
	if err := s.st.EventInsertMany(ctx, evs); err != nil {
		s.logger.ErrorContext(ctx, "write task events", slog.Int("count", len(evs)), slog.String("error", err.Error()))
	}
}
