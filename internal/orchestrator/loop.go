package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// Wake asks Run for a tick now (non-blocking; wakes coalesce).
func (o *Orchestrator) Wake(reason string) {
	select {
	case o.wake <- reason:
	default:
	}
}

// Run ticks every cfg.Tick and at once on Wake, while this process is the
// leader, until ctx is cancelled. It registers Wake with the queue so a
// submit or a registration starts a tick immediately. The leader's
// maintenance services (maintain.go) run beside the loop from the moment
// leadership is won until it is lost. On cancellation it finishes the tick
// in progress, stops the maintenance, resigns leadership and returns nil.
func (o *Orchestrator) Run(ctx context.Context) error {
	if o.q != nil {
		o.q.SetWaker(o.Wake)
	}
	el := o.elector
	o.m.setLeader(el.ID(), false)
	var wg sync.WaitGroup
	wg.Go(func() {
		el.Run(ctx, func(leader bool) { o.leadershipChanged(ctx, leader) })
	})
	defer wg.Wait()
	defer o.maint.Stop()
	// Win the first election before the first tick when possible.
	if _, err := el.Attempt(ctx); err != nil && ctx.Err() == nil {
		o.log.Warn("leader election attempt failed", "err", err)
	}
	ticker := time.NewTicker(tickOf(o.cfg))
	defer ticker.Stop()
	var lastSample time.Time
	for {
		if el.IsLeader() {
			rep, err := o.Tick(ctx)
			switch {
			case o.recordFenced(err):
			case err != nil && ctx.Err() == nil:
				o.log.Error("tick failed", "err", err)
			}
			if rep != nil && o.afterTick != nil {
				o.afterTick(rep)
			}
			lastSample = o.sampleIfDue(ctx, lastSample)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-o.wake:
		}
	}
}

// leadershipChanged is the elector's hook: a won leadership is recorded,
// starts the maintenance services and wakes the loop; a lost one stops
// the services (and waits for a pass in progress) before anything else
// runs as a follower.
func (o *Orchestrator) leadershipChanged(ctx context.Context, leader bool) {
	// A replica that leads again must not trust the fleet it knew before.
	o.fleetStale.Store(true)
	if !leader {
		o.maint.Stop()
		o.leaderChanged(ctx, leader)
		return
	}
	o.leaderChanged(ctx, leader)
	if err := o.maint.Start(ctx); err != nil {
		o.log.Error("start maintenance services", "err", err)
	}
	o.Wake("elected")
}

// Elector returns the orchestrator's elector (leadership, term, fence).
func (o *Orchestrator) Elector() *Elector { return o.elector }

// leaderChanged records a gained or lost leadership: the drover_leader
// metric and a leader.changed event. The new leader records takeovers and
// resignations (with the previous holder); a leader that shuts down
// records its own departure.
func (o *Orchestrator) leaderChanged(ctx context.Context, leader bool) {
	el := o.elector
	o.m.setLeader(el.ID(), leader)
	row := el.Row()
	var ev *core.Event
	switch {
	case leader:
		o.m.term.Set(float64(row.Term))
		cause := row.Cause
		if cause == "" {
			cause = "takeover"
		}
		ev = &core.Event{Kind: core.EventLeaderChanged, Message: fmt.Sprintf("leader is now %s (term %d, %s from %q)", el.ID(), row.Term, cause, row.PreviousID),
			Data: mustJSON(map[string]any{"old": row.PreviousID, "new": el.ID(), "term": row.Term, "cause": cause})}
	case ctx.Err() != nil:
		ev = &core.Event{Kind: core.EventLeaderChanged, Message: fmt.Sprintf("leader %s resigned at shutdown (term %d)", el.ID(), row.Term),
			Data: mustJSON(map[string]any{"old": el.ID(), "new": "", "term": row.Term, "cause": "shutdown"})}
	default:
		o.log.Warn("leadership lost", "id", el.ID(), "term", row.Term)
		return
	}
	ev.Time = o.clock.Now()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := o.st.EventInsertMany(wctx, []*core.Event{ev}); err != nil {
		o.log.Warn("record leader.changed event", "err", err)
	}
}

// recordFenced handles a tick error that is a fenced write: another
// replica leads now, so this one counts and logs the rejected write and
// stops trusting its leadership at once. It reports whether err was one.
func (o *Orchestrator) recordFenced(err error) bool {
	if !errors.Is(err, store.ErrFenced) {
		return false
	}
	el := o.elector
	o.m.fenced.Inc()
	o.log.Warn("leader-only write rejected: leadership term is over", "err", err, "id", el.ID())
	el.Deposed()
	o.m.setLeader(el.ID(), false)
	return true
}
