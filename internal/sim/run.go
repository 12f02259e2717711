package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/orchestrator"
	"github.com/droverhq/drover/internal/provider"
	psim "github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/server"
	"github.com/droverhq/drover/internal/sim/simagent"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/google/uuid"
)

// Epoch is the virtual time at which every simulation starts (arrival 0).
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// maxJump bounds one clock jump, so that a deadline the harness does not
// predict (a retry's backoff, a task timeout) is acted on at most this
// late. Agents heartbeat at every stop before the tick, so a long jump
// loses no lease and fails no worker.
const maxJump = 10 * time.Minute

// Options are the inputs of one simulation.
type Options struct {
	Trace  []TraceTask
	World  *World
	Config *config.Config
	// Store, when set, is the database to run on; it must hold no tasks
	// and no workers. Nil: a fresh SQLite file in a temporary directory.
	Store store.Store
	// Timeline, when set, receives one CSV row per tick.
	Timeline io.Writer
}

// run is the state of one simulation.
type run struct {
	opts  Options
	cfg   *config.Config
	w     *World
	clock *core.FakeClock
	st    store.Store
	q     *queue.Service
	prov  *psim.Provider
	fleet *simagent.Fleet
	orch  *orchestrator.Orchestrator
	end   time.Time

	ids      []uuid.UUID // submitted tasks, in trace order
	rep      *Report
	integ    map[string]float64 // time-weighted sums (worker-seconds)
	lastOpen map[string]bool    // breaker keys open at the previous step
	drained  int
}

// Run replays opts.Trace through the real control loop (orchestrator,
// queue, store) with the sim provider and simulated agents on a virtual
// clock, and returns the report. The clock jumps from one moment at which
// something can change to the next: an arrival, an instance becoming
// running or booting or crashing, a task ending, a worker deadline
// (provision, boot, idle, heartbeat), a breaker's cooldown — and steps one
// tick at a time while the loop is acting.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if len(opts.Trace) == 0 || opts.World == nil || opts.Config == nil {
		return nil, errors.New("simulate: trace, world and config are required")
	}
	r := &run{opts: opts, cfg: opts.Config, w: opts.World, clock: core.NewFakeClock(Epoch),
		integ: map[string]float64{}, lastOpen: map[string]bool{}}
	r.st = opts.Store
	if r.st == nil {
		dir, err := os.MkdirTemp("", "drover-simulate-*")
		if err != nil {
			return nil, fmt.Errorf("simulate: temp dir: %w", err)
		}
		defer os.RemoveAll(dir)
		st, err := sqlite.Open(ctx, filepath.Join(dir, "sim.db"))
		if err != nil {
			return nil, fmt.Errorf("simulate: open sqlite: %w", err)
		}
		defer st.Close()
		r.st = st
	}
	if _, err := r.st.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("simulate: migrate: %w", err)
	}
	if err := checkEmpty(ctx, r.st); err != nil {
		return nil, err
	}
	if err := r.setup(); err != nil {
		return nil, err
	}
	if err := r.loop(ctx); err != nil {
		return nil, err
	}
	return r.report(ctx)
}

func checkEmpty(ctx context.Context, st store.Store) error {
	ws, err := st.WorkerList(ctx, &store.WorkerListParams{Limit: 1, States: allWorkerStates})
	if err != nil {
		return fmt.Errorf("simulate: list workers: %w", err)
	}
	n, err := st.TaskCountByState(ctx)
	if err != nil {
		return fmt.Errorf("simulate: count tasks: %w", err)
	}
	total := 0
	for _, c := range n {
		total += c
	}
	if len(ws) > 0 || total > 0 {
		return core.Invalid("db", "the simulator needs an empty database (this one holds %d tasks and workers); use a fresh one", total+len(ws))
	}
	return nil
}

var allWorkerStates = []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting,
	core.WorkerReady, core.WorkerDraining, core.WorkerTerminating, core.WorkerTerminated, core.WorkerFailed}

// script turns a world placement into a provider script.
func (r *run) script(p *Placement) psim.Script {
	running := p.RunningAfter.D()
	boot := p.Boot
	price := r.w.PricePerHour
	if p.PricePerHour != nil {
		price = *p.PricePerHour
	}
	s := psim.Script{
		ProvisionTime:     running,
		BootDist:          func(rnd *rand.Rand) time.Duration { return max(0, boot.Sample(rnd)-running) },
		NeverBootFraction: p.NeverBoot,
		PricePerHour:      price,
	}
	if rate := p.CrashPerHour; rate > 0 {
		s.CrashDist = func(rnd *rand.Rand) time.Duration {
			return time.Duration(rnd.ExpFloat64() / rate * float64(time.Hour))
		}
	}
	if outages := slices.Clone(p.CapacityOutages); len(outages) > 0 {
		s.CapacityOut = func(now time.Time) bool {
			at := now.Sub(Epoch)
			for _, o := range outages {
				if at >= o.From.D() && at < o.To.D() {
					return true
				}
			}
			return false
		}
	}
	return s
}

func (r *run) setup() error {
	discard := slog.New(slog.DiscardHandler)
	r.q = queue.New(r.st, r.clock, server.QueueConfig(r.cfg), discard)
	def := &Placement{Boot: Dist{Kind: "fixed", set: map[string]bool{"value": true}}}
	if p := r.w.Placements["*"]; p != nil {
		def = p
	}
	r.prov = psim.New(r.clock, psim.Options{Seed: r.w.Seed, Default: r.script(def)})
	for key, p := range r.w.Placements {
		if key != "*" {
			r.prov.SetScript(key, r.script(p))
		}
	}
	r.fleet = simagent.NewFleet(r.prov, r.q, simagent.FleetOptions{
		HeartbeatInterval: orDefault(r.cfg.HeartbeatInterval, config.DefaultHeartbeatInterval),
		Behavior:          simagent.ParamsBehavior(simagent.TaskBehavior{Duration: time.Minute}),
		Logger:            discard,
	})
	o, err := orchestrator.New(orchestrator.Deps{Store: r.st, Queue: r.q, Providers: map[string]provider.Provider{"sim": r.prov},
		Clock: r.clock, Config: r.cfg, Logger: discard})
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	r.orch = o
	last := r.opts.Trace[len(r.opts.Trace)-1].Arrival
	r.end = Epoch.Add(last + r.w.RunAfterLastArrival.D())
	r.rep = newReport()
	return nil
}

func orDefault(d config.Duration, def time.Duration) time.Duration {
	if d > 0 {
		return d.D()
	}
	return def
}

// submit submits every trace task that has arrived by now.
func (r *run) submit(ctx context.Context, next *int) error {
	var reqs []queue.SubmitRequest
	kill := r.w.PoisonKillAfter.D()
	for *next < len(r.opts.Trace) && !Epoch.Add(r.opts.Trace[*next].Arrival).After(r.clock.Now()) {
		t := r.opts.Trace[*next]
		d, outcome := t.Duration, "succeed"
		if t.Poison {
			d, outcome = kill, "kill"
		}
		params, _ := json.Marshal(map[string]string{"sim_duration": d.String(), "sim_outcome": outcome})
		typ := t.Type
		if typ == "" {
			typ = "sim"
		}
		prio := t.Priority
		reqs = append(reqs, queue.SubmitRequest{Type: typ, Owner: t.Owner, Pool: t.Pool, Priority: &prio, Params: params})
		*next++
	}
	if len(reqs) == 0 {
		return nil
	}
	res, err := r.q.Submit(ctx, reqs)
	if err != nil {
		return fmt.Errorf("simulate: submit at %s: %w", r.clock.Now().Sub(Epoch), err)
	}
	for _, x := range res {
		r.ids = append(r.ids, x.Task.ID)
	}
	return nil
}

// loop runs the simulation to r.end.
func (r *run) loop(ctx context.Context) error {
	tick := orDefault(r.cfg.Tick, config.DefaultTick)
	next := 0
	if r.opts.Timeline != nil {
		fmt.Fprintln(r.opts.Timeline, timelineHeader)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := r.clock.Now()
		if err := r.submit(ctx, &next); err != nil {
			return err
		}
		if err := r.fleet.Step(ctx); err != nil {
			return fmt.Errorf("simulate: agents: %w", err)
		}
		tr, err := r.orch.Tick(ctx)
		if err != nil {
			return fmt.Errorf("simulate: tick at %s: %w", now.Sub(Epoch), err)
		}
		// The leader's maintenance (expired leases, timeouts, queue TTL,
		// retention) runs beside the loop in a server; here, in step.
		if err := r.orch.MaintainDue(ctx); err != nil {
			return fmt.Errorf("simulate: maintenance at %s: %w", now.Sub(Epoch), err)
		}
		// Agents long-poll their claims: what the tick requeued, or a
		// worker it made ready, is claimed at once.
		if tr.Requeued > 0 || len(tr.Ready) > 0 {
			if err := r.fleet.Step(ctx); err != nil {
				return fmt.Errorf("simulate: agents: %w", err)
			}
		}
		r.rep.Steps++
		r.drained += len(tr.Drained)
		live, err := r.st.WorkerList(ctx, &store.WorkerListParams{LiveOnly: true, Brief: true})
		if err != nil {
			return fmt.Errorf("simulate: list workers: %w", err)
		}
		bs, err := r.st.BreakerGetAll(ctx)
		if err != nil {
			return fmt.Errorf("simulate: breakers: %w", err)
		}
		if r.opts.Timeline != nil {
			if err := r.timeline(ctx, tr, live); err != nil {
				return err
			}
		}
		if !now.Before(r.end) {
			return nil
		}
		at := r.nextStop(tr, live, bs, next, tick)
		r.integrate(live, bs, at.Sub(now))
		r.clock.Set(at)
	}
}

// nextStop is the next moment at which something can change.
func (r *run) nextStop(tr *orchestrator.TickReport, live []*core.Worker, bs []*core.BreakerState, nextArrival int, tick time.Duration) time.Time {
	now := r.clock.Now()
	best := now.Add(maxJump)
	if r.end.Before(best) {
		best = r.end
	}
	consider := func(t time.Time) {
		if t.After(now) && t.Before(best) {
			best = t
		}
	}
	// The next tick of the real loop strictly after t (timeouts compare
	// with >): ticks fall on Epoch + k·tick.
	gridAfter := func(t time.Time) time.Time {
		k := t.Sub(Epoch)/tick + 1
		return Epoch.Add(k * tick)
	}
	// The first tick at or after t (the idle rule compares with >=).
	gridAtOrAfter := func(t time.Time) time.Time {
		if t.Sub(Epoch)%tick == 0 {
			return t
		}
		return gridAfter(t)
	}
	active := len(tr.Spawned)+len(tr.Failed)+len(tr.Ready)+len(tr.Drained)+len(tr.Terminated)+len(tr.OrphansDeleted) > 0 || tr.Requeued > 0
	for _, w := range live {
		ps := r.cfg.Pools[w.Pool]
		switch w.State {
		case core.WorkerRequested, core.WorkerDraining, core.WorkerTerminating, core.WorkerFailed:
			active = true
		case core.WorkerProvisioning:
			consider(gridAfter(w.CreatedAt.Add(orDefault(ps.ProvisionTimeout, config.DefaultProvisionTimeout))))
		case core.WorkerBooting:
			consider(gridAfter(w.CreatedAt.Add(orDefault(ps.BootTimeout, config.DefaultBootTimeout))))
		case core.WorkerReady:
			if r.fleet.Stopped(w.InstanceID) {
				active = true // heartbeats stopped: the loop will notice
				break
			}
			if w.Running == 0 {
				since := w.StateChangedAt
				if w.ReadyAt != nil {
					since = *w.ReadyAt
				}
				if w.LastTaskAt != nil && w.LastTaskAt.After(since) {
					since = *w.LastTaskAt
				}
				consider(gridAtOrAfter(since.Add(orDefault(ps.IdleTimeout, config.DefaultIdleTimeout))))
			}
		}
	}
	if active {
		consider(now.Add(tick))
	}
	for _, b := range bs {
		if b.Until != nil {
			consider(gridAfter(*b.Until))
		}
	}
	if nextArrival < len(r.opts.Trace) {
		consider(Epoch.Add(r.opts.Trace[nextArrival].Arrival))
	}
	if t, ok := r.prov.NextChange(now); ok {
		consider(t)
	}
	if t, ok := r.fleet.NextDue(now); ok {
		consider(t)
	}
	return best
}

// integrate adds the state held over the next d to the time-weighted sums.
func (r *run) integrate(live []*core.Worker, bs []*core.BreakerState, d time.Duration) {
	s := d.Seconds()
	for _, w := range live {
		switch w.State {
		case core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting:
			r.integ["booting"] += s
		case core.WorkerReady:
			if w.Running == 0 {
				r.integ["idle"] += s
			} else {
				r.integ["busy"] += s
			}
		}
	}
	open := map[string]bool{}
	for _, b := range bs {
		if b.Status == core.BreakerOpen {
			open[b.Key] = true
			if !r.lastOpen[b.Key] {
				r.rep.Breakers.Trips++
			}
			r.integ["breaker_open"] += s
		}
	}
	r.lastOpen = open
}

// percentile returns the p-th percentile (nearest rank) of sorted xs.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*p/100)) - 1
	return sorted[max(i, 0)]
}
