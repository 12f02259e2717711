package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/maintenance"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
)

// PruneInterval is how often the leader deletes rows older than the
// configured retention (events, logs, finished tasks, samples).
const PruneInterval = maintenance.DefaultRetentionInterval

// newMaintenance builds the leader's maintenance services (package
// maintenance). Run starts them when this replica wins leadership and
// stops them when it loses it or shuts down. Every pass checks, just
// before it runs, that this replica still leads, and runs under the fence
// of its term, so a deposed replica's maintenance writes nothing.
func (o *Orchestrator) newMaintenance(d Deps) (*maintenance.Group, error) {
	tick := tickOf(o.cfg)
	retention := orDefault(o.cfg.Retention, config.DefaultRetention)
	return maintenance.New(maintenance.Config{
		Queue: o.q, Store: o.st, Clock: o.clock, Logger: o.log.With("component", "maintenance"),
		Gate: func(ctx context.Context) (context.Context, bool) {
			if !o.elector.IsLeader() {
				return ctx, false
			}
			return o.fenced(ctx), true
		},
		Retention: retention,
		// A worker that dies holding tasks loses its heartbeat and its
		// leases at the same moment (the lease lasts heartbeat_timeout).
		// The tick that fails the worker requeues them and records that it
		// held work (a poison task is no start failure of its placement);
		// the lease service waits two ticks longer, so it only takes the
		// leases a living agent stopped reporting and any the tick missed.
		LeaseGrace: 2 * tick,
		Intervals:  maintenance.Intervals{Leases: tick, Timeouts: tick},
		Wake:       o.Wake,
		OnReport:   o.recordMaintenance,
		// Outputs are swept by the leader only: replicas never race to
		// delete the same objects.
		SweepOutputs: d.SweepOutputs,
		Poll:         d.MaintenancePoll,
		OnPass: func(name string, err error) {
			o.recordFenced(err)
			if d.OnMaintenancePass != nil {
				d.OnMaintenancePass(name, err)
			}
		},
	})
}

// Maintenance returns the leader's maintenance services.
func (o *Orchestrator) Maintenance() *maintenance.Group { return o.maint }

// MaintainDue runs, in the caller's goroutine, every maintenance service
// whose interval has passed on the clock, under this process's fence. It
// is for drivers that call Tick themselves (the simulator, tests,
// benchmarks); Run starts the services instead, while it leads. It
// returns the first error.
func (o *Orchestrator) MaintainDue(ctx context.Context) error {
	// A fenced pass was already recorded (and deposed this replica) by
	// the services' OnPass hook.
	_, err := o.maint.RunDue(o.fenced(ctx))
	if errors.Is(err, store.ErrFenced) {
		return err
	}
	if err != nil {
		return fmt.Errorf("maintenance: %w", err)
	}
	return nil
}

// fenced returns ctx carrying the fence of the term this process won
// last, if any.
func (o *Orchestrator) fenced(ctx context.Context) context.Context {
	if f, ok := o.elector.Fence(); ok {
		return store.WithFence(ctx, f)
	}
	return ctx
}

// recordMaintenance counts what a task-rule maintenance pass did and
// records it as one tick event.
func (o *Orchestrator) recordMaintenance(ctx context.Context, rep queue.MaintainReport) {
	o.xm.observeMaintenance(rep)
	ev := &core.Event{Time: o.clock.Now(), Kind: core.EventTick,
		Message: fmt.Sprintf("maintenance: %d expired leases requeued, %d attempts timed out, %d attempts stalled, %d queued tasks expired",
			len(rep.Requeued), len(rep.TimedOut), len(rep.Stalled), rep.Expired)}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := o.st.EventInsertMany(wctx, []*core.Event{ev}); err != nil && !errors.Is(err, context.Canceled) {
		o.log.Warn("record maintenance event", "err", err)
	}
}
