package queue

import (
	"context"
	"fmt"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// Maintain is the leader's periodic pass: it requeues (or fails, when lost
// too often) tasks whose lease expired, fails attempts that ran past their
// timeout, and expires queued tasks older than QueueTTL. Events for all of
// it are written in one batch.
func (s *Service) Maintain(ctx context.Context) (MaintainReport, error) {
	var rep MaintainReport
	now := s.clock.Now()
	var evs []*core.Event
	wakeClaims := false

	requeued, err := RequeueLost(ctx, s.st, now, nil, now)
	if err != nil {
		return rep, fmt.Errorf("maintain: requeue expired leases: %w", err)
	}
	rep.Requeued = requeued
	for _, t := range requeued {
		if t.State == core.TaskQueued {
			wakeClaims = true
			evs = append(evs, taskEvent(now, core.EventTaskRequeued, t, fmt.Sprintf("lease expired; requeued (lost %d of %d)", t.Lost, t.MaxLost)))
		} else {
			evs = append(evs, taskEvent(now, core.EventTaskFailed, t, "lease expired: "+t.Error))
		}
	}

	timedOut, err := TimeoutRunning(ctx, s.st, now)
	if err != nil {
		s.emit(ctx, evs...)
		return rep, fmt.Errorf("maintain: time out attempts: %w", err)
	}
	rep.TimedOut = timedOut
	for _, t := range timedOut {
		if t.State == core.TaskQueued {
			wakeClaims = true
		}
		evs = append(evs, failEvent(now, t, fmt.Sprintf("attempt %d exceeded its timeout of %s", t.Attempt, t.Timeout)))
	}

	if len(s.cfg.StallTimeouts) > 0 {
		stalled, err := StallRunning(ctx, s.st, s.cfg.StallTimeouts, now)
		if err != nil {
			s.emit(ctx, evs...)
			return rep, fmt.Errorf("maintain: %w", err)
		}
		rep.Stalled = stalled
		for _, t := range stalled {
			if t.State == core.TaskQueued {
				wakeClaims = true
			}
			evs = append(evs, failEvent(now, t, fmt.Sprintf("attempt %d stalled: no progress and no log line for %s (stall_timeout)", t.Attempt, s.cfg.StallTimeouts[t.Type])))
		}
	}

	expired, err := ExpireQueued(ctx, s.st, now.Add(-s.cfg.QueueTTL), now)
	if err != nil {
		s.emit(ctx, evs...)
		return rep, fmt.Errorf("maintain: expire queued tasks: %w", err)
	}
	rep.Expired = expired
	if expired > 0 {
		evs = append(evs, &core.Event{Time: now, Kind: core.EventTaskExpired,
			Message: fmt.Sprintf("%d queued tasks older than queue_ttl %s expired", expired, s.cfg.QueueTTL)})
	}
	s.emit(ctx, evs...)
	if wakeClaims {
		s.notify()
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
