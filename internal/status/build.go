package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// recentFailure is how long a failure keeps the verdict DEGRADED when no
// worker reached ready after it.
const recentFailure = 10 * time.Minute

// countCap bounds the queue counts of one pool (see Queue.Capped): exact
// below it, "at least countCap" above, so the report's cost does not grow
// with the backlog (the tick bounds its counts the same way).
const countCap = 1_000

// maxTimeline bounds the failure timeline and the events read for it.
const maxTimeline = 200

// Build reads the store and explains the fleet at now. It only reads, in a
// number of queries that does not grow with the fleet or the backlog.
func Build(ctx context.Context, st store.Store, cfg *config.Config, now time.Time) (*Report, error) {
	bcfg := cfg.BreakerConfig()
	r := &Report{Time: now, WindowS: bcfg.Window.Seconds(),
		Workers: WorkerCounts{ByState: map[string]int{}, ByHealth: map[string]int{}},
		Details: []string{}, Pools: []Pool{}, Breakers: []Breaker{}, WorkerTable: []WorkerRow{},
		Failures: []Failure{}, Startup: []StartupStats{}, Hints: []string{}, Actions: []string{}}
	b := &builder{r: r, cfg: cfg, bcfg: bcfg, now: now, pools: map[string]*Pool{}}
	for _, name := range slices.Sorted(maps.Keys(cfg.Pools)) {
		pc := cfg.Pools[name]
		if pc == nil {
			pc = &config.PoolConfig{}
		}
		b.pools[name] = &Pool{Name: name, Provider: pc.Provider, Min: pc.Min, Max: pc.Max,
			Candidates: len(pc.Placements()), MaxHourlySpend: pc.MaxHourlySpend}
	}
	steps := []func(context.Context, store.Store) error{b.leader, b.queue, b.workers, b.breakers, b.failures, b.startup, b.spend, b.poison}
	for _, step := range steps {
		if err := step(ctx, st); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(b.pools)) {
		r.Pools = append(r.Pools, *b.pools[name])
	}
	b.verdict()
	b.hints()
	b.actions()
	return r, nil
}

type builder struct {
	r     *Report
	cfg   *config.Config
	bcfg  breaker.Config
	now   time.Time
	pools map[string]*Pool
	// lastReady is the latest time a worker reached ready (live rows and
	// starts in the window), to tell "recovered" from "failing".
	lastReady time.Time
	// ownerRunning counts running tasks per owner (owners at their limit).
	ownerRunning map[string]int
	// lostBy counts, per task, the workers lost under it in the window.
	lostBy map[string]int
}

func (b *builder) pool(name string) *Pool {
	p, ok := b.pools[name]
	if !ok {
		p = &Pool{Name: name}
		b.pools[name] = p
	}
	return p
}

func (b *builder) queue(ctx context.Context, st store.Store) error {
	q := &b.r.Queue
	// Queue counts are exact up to countCap per pool, so the report's cost
	// does not grow with a huge backlog (Capped says a count is a floor).
	demand, err := st.TaskDemand(ctx, &store.TaskDemandParams{Now: b.now, OwnerLimit: b.cfg.Tasks.OwnerLimit, Cap: countCap})
	if err != nil {
		return fmt.Errorf("status: read demand: %w", err)
	}
	for name, d := range demand {
		q.Queued += d.Queued
		q.Running += d.Running
		q.Claimable += d.Claimable
		q.OwnerBlocked += d.OwnerBlocked
		q.Capped = q.Capped || d.Queued >= countCap || d.Claimable >= countCap || d.OwnerBlocked >= countCap
		p := b.pool(name)
		p.Queued, p.Claimable, p.Running = d.Queued, d.Claimable, d.Running
	}
	q.CompletedLastHour, q.FailedLastHour, err = st.TaskFinishedCount(ctx, b.now.Add(-time.Hour), b.now)
	if err != nil {
		return fmt.Errorf("status: count finished tasks: %w", err)
	}
	if q.Claimable > 0 {
		oldest, err := st.TaskOldestReady(ctx, b.now)
		if err != nil {
			return fmt.Errorf("status: read oldest ready task: %w", err)
		}
		if oldest != nil {
			w := b.now.Sub(*oldest).Seconds()
			q.OldestClaimableWaitS = &w
		}
	}
	if q.OwnerBlocked > 0 && b.cfg.Tasks.OwnerLimit > 0 {
		b.ownerRunning, err = st.TaskRunningByOwner(ctx, b.cfg.Tasks.OwnerLimit)
		if err != nil {
			return fmt.Errorf("status: count running tasks per owner: %w", err)
		}
		for _, o := range slices.Sorted(maps.Keys(b.ownerRunning)) {
			q.OwnersAtLimit = append(q.OwnersAtLimit, OwnerLimit{Owner: o, Running: b.ownerRunning[o], Limit: b.cfg.Tasks.OwnerLimit})
		}
	}
	return nil
}

// workers reads the worker counts as aggregates (one GROUP BY) and only
// the rows the worker table shows (problem workers first, at most
// maxTable), so the report does not decode every worker of a large fleet.
func (b *builder) workers(ctx context.Context, st store.Store) error {
	interval := heartbeatIntervalOf(b.cfg)
	staleBefore := b.now.Add(-2 * interval)
	groups, err := st.WorkerGroups(ctx, staleBefore)
	if err != nil {
		return fmt.Errorf("status: count workers: %w", err)
	}
	r := b.r
	for _, g := range groups {
		health := healthOfGroup(g.State, g.Failed, g.Stale)
		r.Workers.Total += g.Count
		r.Workers.ByState[string(g.State)] += g.Count
		r.Workers.ByHealth[health] += g.Count
		p := b.pool(g.Pool)
		if g.State.Live() {
			r.Workers.Live += g.Count
			p.Live += g.Count
			p.SpendPerHour += g.PricePerHour
			r.Spend.PerHour += g.PricePerHour
		} else {
			r.Workers.Leaving += g.Count
		}
		if g.State == core.WorkerReady {
			p.Ready += g.Count
		}
		if g.LastReadyAt != nil && g.LastReadyAt.After(b.lastReady) {
			b.lastReady = *g.LastReadyAt
		}
	}
	if r.Workers.Total == 0 {
		return nil
	}
	ids, err := st.WorkerAttentionIDs(ctx, staleBefore, maxTable)
	if err != nil {
		return fmt.Errorf("status: list workers: %w", err)
	}
	if len(ids) == 0 {
		return nil
	}
	ws, err := st.WorkerList(ctx, &store.WorkerListParams{IDs: ids, LiveOnly: true})
	if err != nil {
		return fmt.Errorf("status: list workers: %w", err)
	}
	for _, w := range ws {
		row := WorkerRow{ID: w.ID.String(), Pool: w.Pool, Placement: w.Placement, State: string(w.State),
			AgeS: b.now.Sub(w.CreatedAt).Seconds(), TasksDone: w.TasksDone, Running: w.Running,
			PricePerHour: w.PricePerHour, Failure: string(w.Failure)}
		if w.LastHeartbeatAt != nil {
			a := b.now.Sub(*w.LastHeartbeatAt).Seconds()
			row.HeartbeatAgeS = &a
		}
		row.Health = healthOf(w, b.now, interval)
		r.WorkerTable = append(r.WorkerTable, row)
	}
	r.WorkerTableOmitted = max(0, r.Workers.Total-len(r.WorkerTable))
	return nil
}

// maxTable bounds the worker table: a fleet of 10,000 is summarised by its
// counts, and the table keeps the workers that need attention.
const maxTable = 200

func healthOf(w *core.Worker, now time.Time, interval time.Duration) string {
	stale := w.LastHeartbeatAt == nil || now.Sub(*w.LastHeartbeatAt) > 2*interval
	return healthOfGroup(w.State, w.Failure != "", stale)
}

// healthOfGroup is the health label of a worker in state with a failure
// class set (failed) and, when ready, no recent heartbeat (stale).
func healthOfGroup(state core.WorkerState, failed, stale bool) string {
	switch state {
	case core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting:
		return HealthInitializing
	case core.WorkerReady:
		if stale {
			return HealthStale
		}
		return HealthHealthy
	case core.WorkerDraining:
		return HealthDraining
	case core.WorkerTerminating:
		if failed {
			return HealthFailed
		}
		return HealthTerminating
	}
	return HealthFailed
}

func (b *builder) breakers(ctx context.Context, st store.Store) error {
	bs, err := Breakers(ctx, st, b.cfg, b.now)
	if err != nil {
		return err
	}
	b.r.Breakers = bs
	return nil
}

// Breakers returns every breaker with its numbers: each configured
// placement (closed when never persisted) plus any persisted key, sorted by
// key.
func Breakers(ctx context.Context, st store.Store, cfg *config.Config, now time.Time) ([]Breaker, error) {
	bcfg := cfg.BreakerConfig()
	states, err := st.BreakerGetAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: load breakers: %w", err)
	}
	byKey := map[string]*core.BreakerState{}
	for _, s := range states {
		byKey[s.Key] = s
	}
	for name, pc := range cfg.Pools {
		if pc == nil {
			continue
		}
		for _, pl := range pc.Placements() {
			if _, ok := byKey[pl.Key(name)]; !ok {
				byKey[pl.Key(name)] = breaker.New(pl.Key(name), now)
			}
		}
	}
	out := []Breaker{}
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		out = append(out, breakerOf(bcfg, byKey[key], now))
	}
	return out, nil
}

func breakerOf(bcfg breaker.Config, s *core.BreakerState, now time.Time) Breaker {
	sum := breaker.Summarize(bcfg, s, now)
	parts := strings.SplitN(s.Key, "/", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	br := Breaker{Key: s.Key, Pool: parts[0], GPU: parts[1], Region: parts[2], Label: breaker.KeyLabel(s.Key),
		State: string(sum.Status), Failed: sum.Failed, Recent: sum.Total, Rate: sum.Rate, Threshold: sum.Threshold,
		WindowS: sum.Window.Seconds(), MinSamples: sum.MinSamples, Consecutive: sum.Consecutive,
		MaxConsecutive: bcfg.MaxConsecutive, CanaryWorker: s.CanaryWorker, TopClass: string(sum.TopClass),
		Reason: s.Reason, OpenedAt: s.OpenedAt}
	switch sum.Status {
	case core.BreakerOpen:
		if sum.Until != nil {
			at := *sum.Until
			br.CanaryAt = &at
			left := max(0, at.Sub(now).Seconds())
			br.CooldownLeftS = &left
			br.Blocking = now.Before(at)
		} else {
			br.Blocking = true
		}
	case core.BreakerHalfOpen:
		br.Blocking = s.CanaryWorker != ""
	}
	br.Summary = breakerLine(br, now)
	return br
}

// breakerLine renders a breaker's numbers as the seed does: "failed 4/7 in
// last 30m = 57.1% (threshold 80%, min sample 5): not blocking".
func breakerLine(br Breaker, now time.Time) string {
	var s strings.Builder
	fmt.Fprintf(&s, "failed %d/%d in last %s", br.Failed, br.Recent, fmtDur(time.Duration(br.WindowS*float64(time.Second))))
	if br.Recent > 0 {
		fmt.Fprintf(&s, " = %s", pct(br.Rate))
	}
	fmt.Fprintf(&s, ", threshold %s, min sample %d", pct(br.Threshold), br.MinSamples)
	switch {
	case br.State == string(core.BreakerOpen) && br.CanaryAt != nil && br.Blocking:
		fmt.Fprintf(&s, ": BLOCKING, cooldown %s left, canary at %s", fmtDur(br.CanaryAt.Sub(now).Round(time.Second)), br.CanaryAt.UTC().Format("15:04:05"))
	case br.State == string(core.BreakerOpen):
		s.WriteString(": cooldown over, the next spawn is the canary")
	case br.State == string(core.BreakerHalfOpen) && br.CanaryWorker != "":
		fmt.Fprintf(&s, ": half-open, waiting for canary worker %s", br.CanaryWorker)
	case br.State == string(core.BreakerHalfOpen):
		s.WriteString(": half-open, the next spawn is the canary")
	case br.Recent < br.MinSamples:
		fmt.Fprintf(&s, ": not blocking (%d of %d samples needed)", br.Recent, br.MinSamples)
	case br.Rate < br.Threshold:
		s.WriteString(": not blocking, below threshold")
	default:
		s.WriteString(": not blocking")
	}
	return s.String()
}

func pct(f float64) string {
	p := f * 100
	if p == float64(int(p)) {
		return fmt.Sprintf("%d%%", int(p))
	}
	return fmt.Sprintf("%.1f%%", p)
}

// failureData is the data of a worker.failed event.
type failureData struct {
	Class     string `json:"class"`
	AgeS      int    `json:"age_s"`
	Placement string `json:"placement"`
	Reason    string `json:"reason"`
	HeldTasks bool   `json:"held_tasks"`
}

func (b *builder) failures(ctx context.Context, st store.Store) error {
	evs, err := st.EventRecent(ctx, []core.EventKind{core.EventWorkerFailed}, b.now.Add(-b.bcfg.Window), maxTimeline)
	if err != nil {
		return fmt.Errorf("status: list recent failures: %w", err)
	}
	for _, e := range evs {
		var d failureData
		_ = json.Unmarshal(e.Data, &d)
		b.r.Failures = append(b.r.Failures, Failure{Time: e.Time, WorkerID: e.WorkerID, Pool: e.Pool,
			Placement: d.Placement, Class: d.Class, Detail: d.Reason, AgeAtFailureS: float64(d.AgeS),
			AgoS: b.now.Sub(e.Time).Seconds()})
	}
	sort.SliceStable(b.r.Failures, func(i, j int) bool { return b.r.Failures[i].Time.Before(b.r.Failures[j].Time) })
	return nil
}

// startup computes time to first heartbeat per placement over the workers
// that reached ready in the window (a range of ready_at, at most
// maxStarts, the latest).
func (b *builder) startup(ctx context.Context, st store.Store) error {
	starts, err := st.WorkerStarts(ctx, b.now.Add(-b.bcfg.Window), b.now, maxStarts)
	if err != nil {
		return fmt.Errorf("status: list recent starts: %w", err)
	}
	byPl := map[string][]time.Duration{}
	for _, w := range starts {
		if w.ReadyAt.After(b.lastReady) {
			b.lastReady = w.ReadyAt
		}
		byPl[w.Placement] = append(byPl[w.Placement], w.ReadyAt.Sub(w.CreatedAt))
	}
	for _, pl := range slices.Sorted(maps.Keys(byPl)) {
		ds := byPl[pl]
		slices.Sort(ds)
		s := StartupStats{Placement: pl, Label: breaker.KeyLabel(pl), Samples: len(ds),
			P50S: quantile(ds, 0.5).Seconds(), P95S: quantile(ds, 0.95).Seconds(), MaxS: ds[len(ds)-1].Seconds(),
			ThresholdS: DefaultSlowStart.Seconds()}
		s.Slow = s.P95S > s.ThresholdS
		b.r.Startup = append(b.r.Startup, s)
	}
	return nil
}

// maxStarts bounds the start-ups read for the statistics.
const maxStarts = 1000

// quantile returns the q-quantile of sorted ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	i := int(float64(len(ds))*q+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func (b *builder) spend(ctx context.Context, st store.Store) error {
	per, err := st.WorkerSpend(ctx, b.now.Add(-24*time.Hour), b.now)
	if err != nil {
		return fmt.Errorf("status: read spend: %w", err)
	}
	for name, v := range per {
		b.pool(name).SpendLast24h = v
		b.r.Spend.Last24h += v
	}
	b.r.Spend.MaxHourlySpend = globalSpendCap(b.cfg)
	return nil
}

// poison counts, per task, the leases lost in the window because the
// worker running it died (task.requeued and task.failed events that say
// so): a task that lost several workers may be what kills them.
func (b *builder) poison(ctx context.Context, st store.Store) error {
	evs, err := st.EventRecent(ctx, []core.EventKind{core.EventTaskRequeued, core.EventTaskFailed}, b.now.Add(-b.bcfg.Window), maxLost)
	if err != nil {
		return fmt.Errorf("status: list lost tasks: %w", err)
	}
	b.lostBy = map[string]int{}
	for _, e := range evs {
		if e.TaskID != "" && strings.Contains(e.Message, "lost") {
			b.lostBy[e.TaskID]++
		}
	}
	return nil
}

// maxLost bounds the lost-task events read for the poison hint.
const maxLost = 1000

// leader reads the leadership row when the store keeps one.
func (b *builder) leader(ctx context.Context, st store.Store) error {
	lr, ok := st.(store.LeaderReader)
	if !ok {
		return nil
	}
	l, err := lr.LeaderGet(ctx)
	switch {
	case err == nil:
		b.r.Leader = &Leader{ID: l.LeaderID, Term: l.Term, Since: l.ElectedAt, ExpiresAt: l.ExpiresAt, Expired: !l.ExpiresAt.After(b.now)}
	case !errors.Is(err, core.ErrNotFound):
		return fmt.Errorf("status: read leader: %w", err)
	}
	return nil
}
