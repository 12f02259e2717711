package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// The leader's maintenance rules. Package maintenance runs each as a
// service on its own interval; Maintain runs them all once. Each writes
// its events (batched with the heartbeat group commit while Start runs)
// and, when it made work claimable, wakes the parked claims here and on
// the other replicas (Notify).

// ExpireLeases requeues (or fails, when lost too often) the running tasks
// whose lease expired more than grace ago, and returns them ordered by id.
// grace 0 takes every expired lease; the leader's lease service passes a
// grace so that a worker that died holding a task (its heartbeat_timeout
// is the lease duration) is failed, and its leases requeued, by the
// control loop first, which records that it held work.
func (s *Service) ExpireLeases(ctx context.Context, grace time.Duration) ([]*core.Task, error) {
	now := s.clock.Now()
	requeued, err := RequeueLost(ctx, s.st, now, nil, now.Add(-grace))
	if err != nil {
		return nil, fmt.Errorf("requeue expired leases: %w", err)
	}
	var evs []*core.Event
	claimable := false
	for _, t := range requeued {
		if t.State == core.TaskQueued {
			claimable = true
			evs = append(evs, taskEvent(now, core.EventTaskRequeued, t, fmt.Sprintf("lease expired; requeued (lost %d of %d)", t.Lost, t.MaxLost)))
		} else {
			evs = append(evs, taskEvent(now, core.EventTaskFailed, t, "lease expired: "+t.Error))
		}
	}
	s.emit(ctx, evs...)
	if claimable {
		s.notify()
	}
	return requeued, nil
}

// TimeOutAttempts fails, as retryable handler failures, the running
// attempts past their timeout, then those of a type with a stall_timeout
// that went quiet (StallRunning). It returns both lists, ordered by id.
func (s *Service) TimeOutAttempts(ctx context.Context) (timedOut, stalled []*core.Task, err error) {
	now := s.clock.Now()
	var evs []*core.Event
	claimable := false
	defer func() {
		s.emit(ctx, evs...)
		if claimable {
			s.notify()
		}
	}()
	timedOut, err = TimeoutRunning(ctx, s.st, now)
	if err != nil {
		return nil, nil, fmt.Errorf("time out attempts: %w", err)
	}
	for _, t := range timedOut {
		claimable = claimable || t.State == core.TaskQueued
		evs = append(evs, failEvent(now, t, fmt.Sprintf("attempt %d exceeded its timeout of %s", t.Attempt, t.Timeout)))
	}
	stalled = []*core.Task{}
	if len(s.cfg.StallTimeouts) > 0 {
		stalled, err = StallRunning(ctx, s.st, s.cfg.StallTimeouts, now)
		if err != nil {
			return timedOut, nil, err
		}
		for _, t := range stalled {
			claimable = claimable || t.State == core.TaskQueued
			evs = append(evs, failEvent(now, t, fmt.Sprintf("attempt %d stalled: no progress and no log line for %s (stall_timeout)", t.Attempt, s.cfg.StallTimeouts[t.Type])))
		}
	}
	return timedOut, stalled, nil
}

// ExpireQueuedTTL fails the queued tasks older than QueueTTL (and their
// dependents) and returns how many expired.
func (s *Service) ExpireQueuedTTL(ctx context.Context) (int, error) {
	now := s.clock.Now()
	expired, err := ExpireQueued(ctx, s.st, now.Add(-s.cfg.QueueTTL), now)
	if err != nil {
		return 0, fmt.Errorf("expire queued tasks: %w", err)
	}
	if expired > 0 {
		s.emit(ctx, &core.Event{Time: now, Kind: core.EventTaskExpired,
			Message: fmt.Sprintf("%d queued tasks older than queue_ttl %s expired", expired, s.cfg.QueueTTL)})
	}
	return expired, nil
}

// Maintain runs every maintenance rule once, in order: expired leases (no
// grace), attempt timeouts and stalls, queue TTL. It stops at the first
// error and returns what was done so far.
func (s *Service) Maintain(ctx context.Context) (MaintainReport, error) {
	var rep MaintainReport
	var err error
	if rep.Requeued, err = s.ExpireLeases(ctx, 0); err != nil {
		return rep, fmt.Errorf("maintain: %w", err)
	}
	if rep.TimedOut, rep.Stalled, err = s.TimeOutAttempts(ctx); err != nil {
		return rep, fmt.Errorf("maintain: %w", err)
	}
	if rep.Expired, err = s.ExpireQueuedTTL(ctx); err != nil {
		return rep, fmt.Errorf("maintain: %w", err)
	}
	return rep, nil
}

// Demand returns the per-pool demand signal: tasks claimable now (owner
// limit honoured) and running.
func (s *Service) Demand(ctx context.Context) (map[string]store.PoolDemand, error) {
	return s.DemandCapped(ctx, 0)
}

// DemandCapped is Demand with the queued-side counts bounded by capAt (see
// store.TaskDemandParams.Cap: exact below capAt, capAt means "at least";
// 0 = exact). The control loop passes its pools' largest max × concurrency
// so a tick's cost does not grow with the backlog.
func (s *Service) DemandCapped(ctx context.Context, capAt int) (map[string]store.PoolDemand, error) {
	d, err := s.st.TaskDemand(ctx, &store.TaskDemandParams{Now: s.clock.Now(), OwnerLimit: s.cfg.OwnerLimit, Cap: capAt})
	if err != nil {
		return nil, fmt.Errorf("task demand: %w", err)
	}
	return d, nil
}
