package orchestrator

import (
	"context"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/config"
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
// submit or a registration starts a tick immediately. On cancellation it
// finishes the tick in progress, resigns leadership and returns nil.
func (o *Orchestrator) Run(ctx context.Context) error {
	if o.q != nil {
		o.q.SetWaker(o.Wake)
	}
	el := o.elector
	if el == nil {
		el = NewElector(o.st, o.clock, ElectorConfig{
			TTL:      o.cfg.Leader.TTL.D(),
			Interval: o.cfg.Leader.Interval.D(),
		}, o.log)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		el.Run(ctx, func(leader bool) {
			if leader {
				o.Wake("elected")
			}
		})
	})
	defer wg.Wait()
	// Win the first election before the first tick when possible.
	if _, err := el.Attempt(ctx); err != nil && ctx.Err() == nil {
		o.log.Warn("leader election attempt failed", "err", err)
	}
	ticker := time.NewTicker(tickOf(o.cfg))
	defer ticker.Stop()
	var lastPrune, lastSample time.Time
	for {
		if el.IsLeader() {
			rep, err := o.Tick(ctx)
			if err != nil && ctx.Err() == nil {
				o.log.Error("tick failed", "err", err)
			}
			if rep != nil && o.afterTick != nil {
				o.afterTick(rep)
			}
			lastPrune = o.pruneIfDue(ctx, lastPrune)
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

// PruneInterval is how often the leader deletes rows older than the
// configured retention (events, logs, finished tasks).
const PruneInterval = 10 * time.Minute

// pruneIfDue deletes events, logs and finished tasks older than retention
// when PruneInterval has passed since last, and returns the time of the
// last prune. A failed prune is logged and retried at the next interval.
func (o *Orchestrator) pruneIfDue(ctx context.Context, last time.Time) time.Time {
	now := o.clock.Now()
	if !last.IsZero() && now.Sub(last) < PruneInterval {
		return last
	}
	retention := o.cfg.Retention.D()
	if retention <= 0 {
		retention = config.DefaultRetention
	}
	n, err := o.st.Prune(ctx, now.Add(-retention))
	if err != nil {
		if ctx.Err() == nil {
			o.log.Error("prune old rows failed", "err", err, "retention", retention)
		}
		return now
	}
	if n > 0 {
		o.log.Info("pruned rows older than retention", "rows", n, "retention", retention)
	}
	return now
}
