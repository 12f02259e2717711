package orchestrator

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// decideWithGlobalCap is Decide plus the fleet-wide spend.max_hourly_spend:
// the live workers of every pool (terminating ones too: they still cost)
// may not cost more than the cap, so a pool's spawns are cut to the room
// left at its estimated price, or to none, with the reason in Blocked.
// While a pool's price is unknown (no priced worker yet) it spawns one
// worker at a time.
func (o *Orchestrator) decideWithGlobalCap(t *tick, in PoolInput) Decision {
	d := Decide(in)
	limit := o.cfg.Spend.MaxHourlySpend
	if limit <= 0 || d.Spawn == 0 {
		return d
	}
	fleet := 0.0
	for _, w := range t.workers {
		if w.State.Live() || w.State == core.WorkerTerminating {
			fleet += w.PricePerHour
		}
	}
	fleet += t.spawnedSpend
	switch {
	case fleet >= limit:
		d.Blocked = append(d.Blocked, fmt.Sprintf("not scaling up: fleet hourly spend $%.2f reached the global spend.max_hourly_spend $%.2f", fleet, limit))
		d.Spawn = 0
	case in.PriceEstimate == 0 && d.Spawn > 1:
		// The price is known once the provider created an instance: spawn
		// one to learn it rather than overshoot the cap.
		d.Blocked = append(d.Blocked, fmt.Sprintf("spawning 1 of %d: the global spend.max_hourly_spend $%.2f is set and the pool's price per hour is not known yet", d.Spawn, limit))
		d.Spawn = 1
	case in.PriceEstimate > 0:
		room := int(math.Floor((limit - fleet) / in.PriceEstimate))
		if room < d.Spawn {
			d.Blocked = append(d.Blocked, fmt.Sprintf("spawning %d of %d: the global spend.max_hourly_spend $%.2f leaves room for %d at ~$%.2f/h (fleet $%.2f/h)",
				room, d.Spawn, limit, room, in.PriceEstimate, fleet))
			d.Spawn = room
		}
	}
	if d.Spawn > 0 {
		t.spawnedSpend += float64(d.Spawn) * in.PriceEstimate
	}
	return d
}

// sampleIfDue records one sample per pool plus the fleet row
// (store.SampleFleetPool) when spend.sample_interval has passed since last,
// and returns the time of the last sample (the retention maintenance
// service deletes old samples). A failed sample is logged and retried at the next interval.
func (o *Orchestrator) sampleIfDue(ctx context.Context, last time.Time) time.Time {
	now := o.clock.Now()
	interval := orDefault(o.cfg.Spend.SampleInterval, config.DefaultSampleInterval)
	if !last.IsZero() && now.Sub(last) < interval {
		return last
	}
	since := last
	if since.IsZero() {
		since = now.Add(-interval)
	}
	if err := o.Sample(ctx, since, now); err != nil {
		if ctx.Err() == nil {
			o.log.Error("record samples failed", "err", err)
		}
	}
	return now
}

// Sample writes the samples of now: per pool its queue, workers by state
// and spend per hour, and the fleet row with the sums and the tasks that
// finished in (since, now].
func (o *Orchestrator) Sample(ctx context.Context, since, now time.Time) error {
	demand, err := o.st.TaskDemand(ctx, &store.TaskDemandParams{Now: now, OwnerLimit: o.cfg.Tasks.OwnerLimit, Cap: o.demandCap()})
	if err != nil {
		return fmt.Errorf("sample: read demand: %w", err)
	}
	workers, err := o.st.WorkerList(ctx, &store.WorkerListParams{LiveOnly: true, Brief: true})
	if err != nil {
		return fmt.Errorf("sample: list workers: %w", err)
	}
	ok, failed, err := o.st.TaskFinishedCount(ctx, since, now)
	if err != nil {
		return fmt.Errorf("sample: count finished tasks: %w", err)
	}
	byPool := map[string]*store.Sample{}
	get := func(pool string) *store.Sample {
		s := byPool[pool]
		if s == nil {
			s = &store.Sample{Time: now, Pool: pool}
			byPool[pool] = s
		}
		return s
	}
	for name := range o.cfg.Pools {
		get(name)
	}
	for name, d := range demand {
		s := get(name)
		s.Queued, s.Claimable, s.Running = d.Queued, d.Claimable, d.Running
	}
	for _, w := range workers {
		s := get(w.Pool)
		switch w.State {
		case core.WorkerRequested:
			s.Requested++
		case core.WorkerProvisioning:
			s.Provisioning++
		case core.WorkerBooting:
			s.Booting++
		case core.WorkerReady:
			s.Ready++
		case core.WorkerDraining:
			s.Draining++
		case core.WorkerTerminating:
			s.Terminating++
		case core.WorkerFailed:
			s.Failed++
		}
		if w.State.Live() || w.State == core.WorkerTerminating {
			s.SpendPerHour += w.PricePerHour
		}
	}
	fleet := &store.Sample{Time: now, Pool: store.SampleFleetPool, Succeeded: ok, TasksFailed: failed}
	out := []*store.Sample{fleet}
	for _, s := range byPool {
		fleet.Queued += s.Queued
		fleet.Claimable += s.Claimable
		fleet.Running += s.Running
		fleet.Requested += s.Requested
		fleet.Provisioning += s.Provisioning
		fleet.Booting += s.Booting
		fleet.Ready += s.Ready
		fleet.Draining += s.Draining
		fleet.Terminating += s.Terminating
		fleet.Failed += s.Failed
		fleet.SpendPerHour += s.SpendPerHour
		out = append(out, s)
	}
	if err := o.st.SampleInsertMany(ctx, out); err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	return nil
}
