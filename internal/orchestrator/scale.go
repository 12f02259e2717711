package orchestrator

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// scale decides each pool's size and acts on it.
func (o *Orchestrator) scale(ctx context.Context, t *tick) error {
	for _, name := range slices.Sorted(maps.Keys(o.cfg.Pools)) {
		pc := o.cfg.Pools[name]
		ps := settingsOf(name, pc)
		dm := t.demand[name]
		in := PoolInput{
			Pool: name, Now: t.now,
			Min: ps.min, Max: ps.max, IdleBuffer: ps.idleBuffer, Concurrency: ps.concurrency, MaxSpawnPerTick: ps.maxSpawnPerTick,
			IdleTimeout: ps.idleTimeout, MaxHourlySpend: pc.MaxHourlySpend,
			Claimable: dm.Claimable, Running: dm.Running, Queued: dm.Queued, OwnerBlocked: dm.OwnerBlocked,
			DemandCap: o.demandCap(),
		}
		var priced, priceSum float64
		for _, w := range t.workers {
			if w.Pool != name {
				continue
			}
			switch w.State {
			case core.WorkerRequested:
				in.Requested++
			case core.WorkerProvisioning:
				in.Provisioning++
			case core.WorkerBooting:
				in.Booting++
			case core.WorkerReady:
				in.Ready++
				if w.Running == 0 {
					since := w.StateChangedAt
					if w.ReadyAt != nil {
						since = *w.ReadyAt
					}
					if w.LastTaskAt != nil && w.LastTaskAt.After(since) {
						since = *w.LastTaskAt
					}
					in.Idle = append(in.Idle, IdleWorker{ID: w.ID, Since: since})
				}
			case core.WorkerDraining:
				in.Draining++
			}
			if w.State.Live() || w.State == core.WorkerTerminating {
				in.HourlySpend += w.PricePerHour
				if w.PricePerHour > 0 {
					priced++
					priceSum += w.PricePerHour
				}
			}
		}
		if priced > 0 {
			in.PriceEstimate = priceSum / priced
		}
		d := o.decideWithGlobalCap(t, in)

		for _, id := range d.Drain {
			w := t.byID[id]
			idle := time.Duration(0)
			for _, iw := range in.Idle {
				if iw.ID == id {
					idle = t.now.Sub(iw.Since)
				}
			}
			ok, err := o.setState(ctx, t, w, core.WorkerDraining, fmt.Sprintf("scale down: idle %s (idle_timeout %s), %d over desired", idle.Round(time.Second), ps.idleTimeout, -(d.Desired-d.Supply/ps.concurrency)), nil)
			if err != nil {
				return err
			}
			if ok {
				t.rep.Drained = append(t.rep.Drained, id)
				t.event(core.EventScaleDown, name, id.String(), fmt.Sprintf("draining worker %s: idle %s since its last task (idle_timeout %s)", id, idle.Round(time.Second), ps.idleTimeout), nil)
			}
		}
		if d.Spawn > 0 {
			spawned, blocked, err := o.place(ctx, t, ps, d.Spawn)
			if err != nil {
				return err
			}
			if spawned > 0 {
				t.event(core.EventScaleUp, name, "", fmt.Sprintf("spawned %d of %d wanted: %s", spawned, d.Spawn, d.Reason), d)
			}
			d.Blocked = append(d.Blocked, blocked...)
		}
		for _, b := range d.Blocked {
			t.rep.Blocked = append(t.rep.Blocked, "pool "+name+": "+b)
		}
		t.rep.Decisions[name] = d
	}
	return nil
}
