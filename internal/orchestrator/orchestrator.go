package orchestrator

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// Deps are the orchestrator's collaborators.
type Deps struct {
	// Store is the database (required).
	Store store.Store
	// Queue runs the task maintenance and computes demand; when nil the
	// orchestrator reads demand from the store and skips maintenance.
	Queue *queue.Service
	// Providers maps a pool's provider name to its implementation.
	Providers map[string]provider.Provider
	// Clock is the only source of time (required).
	Clock core.Clock
	// Config is the effective drover.yaml (required).
	Config *config.Config
	// Logger receives operational logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, receives the orchestrator's Prometheus metrics.
	Registerer prometheus.Registerer
	// Elector decides leadership in Run; nil creates one over Store.
	Elector *Elector
	// AfterTick, when set, is called with every report Run produces (tests
	// and benchmarks use it instead of sleeping).
	AfterTick func(*TickReport)
}

// Orchestrator is the control loop. Tick is safe to call from several
// goroutines (ticks are serialised).
type Orchestrator struct {
	st        store.Store
	q         *queue.Service
	providers map[string]provider.Provider
	clock     core.Clock
	cfg       *config.Config
	log       *slog.Logger
	bcfg      breaker.Config
	elector   *Elector
	afterTick func(*TickReport)
	wake      chan string
	m         *metrics
	xm        *opsMetrics

	mu sync.Mutex // one tick at a time; guards the fields below
	// orphanSeen remembers when each orphan instance ("provider/id") was
	// first seen. It lives in memory: after a restart the grace starts
	// again, which errs on the side of not killing.
	orphanSeen map[string]time.Time
	// lastBlocked and lastBlockedAt dedupe blocked-only tick events.
	lastBlocked   string
	lastBlockedAt time.Time
}

// New checks deps and returns an orchestrator.
func New(d Deps) (*Orchestrator, error) {
	switch {
	case d.Store == nil:
		return nil, errors.New("orchestrator: Deps.Store is required")
	case d.Clock == nil:
		return nil, errors.New("orchestrator: Deps.Clock is required")
	case d.Config == nil:
		return nil, errors.New("orchestrator: Deps.Config is required")
	}
	for name, pc := range d.Config.Pools {
		if pc == nil {
			return nil, fmt.Errorf("orchestrator: pools.%s is empty", name)
		}
		if _, ok := d.Providers[pc.Provider]; !ok {
			return nil, fmt.Errorf("orchestrator: pools.%s.provider: provider %q is not configured", name, pc.Provider)
		}
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	o := &Orchestrator{
		st:         d.Store,
		q:          d.Queue,
		providers:  d.Providers,
		clock:      d.Clock,
		cfg:        d.Config,
		log:        d.Logger,
		bcfg:       BreakerConfig(d.Config),
		elector:    d.Elector,
		afterTick:  d.AfterTick,
		wake:       make(chan string, 1),
		orphanSeen: map[string]time.Time{},
	}
	m, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: register metrics: %w", err)
	}
	o.m = m
	if o.xm, err = newOpsMetrics(d.Registerer); err != nil {
		return nil, fmt.Errorf("orchestrator: register metrics: %w", err)
	}
	return o, nil
}

// minDemandCap is the smallest demand cap: below it counts are exact, so
// explanations of small fleets show real numbers; counting this far costs
// about a millisecond.
const minDemandCap = 1000

// demandCap is the cap the tick reads demand with: the largest
// max × concurrency of the configured pools, at least minDemandCap. Demand
// beyond a pool's max × concurrency cannot change its decision (desired is
// clamped to max), so counting further would only make the tick grow with
// the backlog.
func (o *Orchestrator) demandCap() int {
	c := minDemandCap
	for name, pc := range o.cfg.Pools {
		ps := settingsOf(name, pc)
		c = max(c, ps.max*ps.concurrency)
	}
	return c
}

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

// TickReport is what one tick observed, decided and did.
type TickReport struct {
	Time     time.Time     `json:"time"`
	Duration time.Duration `json:"duration"`
	// Decisions per pool.
	Decisions map[string]Decision `json:"decisions"`
	// Spawned lists workers whose instance was created this tick.
	Spawned []uuid.UUID `json:"spawned,omitempty"`
	// Failed maps workers failed this tick to their class.
	Failed map[uuid.UUID]core.FailureClass `json:"failed,omitempty"`
	// Ready lists workers that reached ready this tick.
	Ready []uuid.UUID `json:"ready,omitempty"`
	// Drained lists workers set to draining this tick.
	Drained []uuid.UUID `json:"drained,omitempty"`
	// Terminated lists workers whose instance is gone (row terminated).
	Terminated []uuid.UUID `json:"terminated,omitempty"`
	// OrphansDeleted lists instance ids deleted as orphans.
	OrphansDeleted []string `json:"orphans_deleted,omitempty"`
	// Requeued counts tasks requeued (or failed as lost) because their
	// worker failed or was terminated.
	Requeued int `json:"requeued"`
	// ListErrors maps provider names whose List failed to the error.
	ListErrors map[string]string `json:"list_errors,omitempty"`
	// Blocked lists every reason a wanted spawn did not happen.
	Blocked []string `json:"blocked,omitempty"`
	// Events are the events recorded by this tick.
	Events []*core.Event `json:"-"`
}

// tick is the working state of one Tick.
type tick struct {
	now     time.Time
	rep     *TickReport
	events  []*core.Event
	workers []*core.Worker
	byID    map[uuid.UUID]*core.Worker
	// instances per provider (only providers whose List succeeded).
	lists map[string]map[string]*provider.Instance
	// byWorker maps worker id → instance, over good lists.
	byWorker map[string]*provider.Instance
	demand   map[string]store.PoolDemand
	breakers map[string]*core.BreakerState
	dirty    map[string]bool
	requeue  map[uuid.UUID]bool
	changed  bool
	// spawnedSpend estimates the hourly price of this tick's spawns so far
	// (the global spend cap, spend.go).
	spawnedSpend float64
	// maint is the queue maintenance of this tick (metrics_ops.go).
	maint queue.MaintainReport
}

func (t *tick) event(kind core.EventKind, pool, workerID, msg string, data any) {
	e := &core.Event{Time: t.now, Kind: kind, Pool: pool, WorkerID: workerID, Message: msg}
	if data != nil {
		if b, err := json.Marshal(data); err == nil {
			e.Data = b
		}
	}
	t.events = append(t.events, e)
	if kind != core.EventScaleBlocked {
		t.changed = true
	}
}

func (t *tick) breaker(key string) *core.BreakerState {
	st, ok := t.breakers[key]
	if !ok {
		st = breaker.New(key, t.now)
		t.breakers[key] = st
	}
	return st
}

// Tick runs one full pass: observe → reconcile → advance → decide → place →
// record. It is exported for tests and benchmarks; Run calls it.
func (o *Orchestrator) Tick(ctx context.Context) (*TickReport, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	start := time.Now() // wall time, for the duration metric only
	t := &tick{
		now:      o.clock.Now(),
		byID:     map[uuid.UUID]*core.Worker{},
		lists:    map[string]map[string]*provider.Instance{},
		byWorker: map[string]*provider.Instance{},
		dirty:    map[string]bool{},
		requeue:  map[uuid.UUID]bool{},
	}
	t.rep = &TickReport{Time: t.now, Decisions: map[string]Decision{}, Failed: map[uuid.UUID]core.FailureClass{}, ListErrors: map[string]string{}}

	if err := o.observe(ctx, t); err != nil {
		return nil, err
	}
	o.reconcileOrphans(ctx, t)
	if err := o.advance(ctx, t); err != nil {
		return nil, err
	}
	if err := o.requeueLost(ctx, t); err != nil {
		return nil, err
	}
	if err := o.scale(ctx, t); err != nil {
		return nil, err
	}
	if err := o.record(ctx, t); err != nil {
		return nil, err
	}
	t.rep.Duration = time.Since(start)
	t.rep.Events = t.events
	o.m.observe(t)
	o.xm.observe(o, t)
	return t.rep, nil
}

// observe reads everything the tick needs in a constant number of queries.
func (o *Orchestrator) observe(ctx context.Context, t *tick) error {
	// The database reads and the provider lists run concurrently: a tick
	// costs the slowest of them, not their sum (a provider API call can
	// take hundreds of milliseconds).
	var (
		maint    queue.MaintainReport
		maintErr error
		bs       []*core.BreakerState
	)
	names := map[string]bool{}
	for _, pc := range o.cfg.Pools {
		names[pc.Provider] = true
	}
	type listResult struct {
		insts []*provider.Instance
		err   error
	}
	lists := map[string]*listResult{}
	for name := range names {
		if _, ok := o.providers[name]; ok {
			lists[name] = &listResult{}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	// Worker rows first: their Running counts show the leases held before
	// maintenance requeues expired ones, which tells a worker that died
	// holding a task (not a start failure) from one that never worked. The
	// list only has to be read before maintenance writes, not decoded:
	// maintenance and demand start as soon as the list's snapshot is taken
	// (WorkerListParams.Snapshot) and run while its rows are decoded.
	snapshot := make(chan struct{})
	var snapOnce sync.Once
	snapped := func() { snapOnce.Do(func() { close(snapshot) }) }
	g.Go(func() error {
		defer snapped()
		ws, err := o.st.WorkerList(gctx, &store.WorkerListParams{LiveOnly: true, Brief: true, Snapshot: snapped})
		if err != nil {
			return fmt.Errorf("tick: list workers: %w", err)
		}
		t.workers = ws
		return nil
	})
	g.Go(func() error {
		<-snapshot
		if gctx.Err() != nil {
			// The worker list failed: the tick is abandoned.
			return nil
		}
		var err error
		if o.q != nil {
			maint, maintErr = o.q.Maintain(gctx)
			t.demand, err = o.q.DemandCapped(gctx, o.demandCap())
		} else {
			t.demand, err = o.st.TaskDemand(gctx, &store.TaskDemandParams{Now: t.now, OwnerLimit: o.cfg.Tasks.OwnerLimit, Cap: o.demandCap()})
		}
		if err != nil {
			return fmt.Errorf("tick: read demand: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		var err error
		if bs, err = o.st.BreakerGetAll(gctx); err != nil {
			return fmt.Errorf("tick: load breakers: %w", err)
		}
		return nil
	})
	for name, res := range lists {
		p := o.providers[name]
		g.Go(func() error {
			res.insts, res.err = p.List(gctx)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	for _, w := range t.workers {
		t.byID[w.ID] = w
		if w.Provider != "" {
			names[w.Provider] = true
		}
	}
	t.maint = maint
	if maintErr != nil {
		o.log.Error("queue maintenance failed", "err", maintErr)
	} else if len(maint.Requeued)+len(maint.TimedOut)+maint.Expired > 0 {
		t.event(core.EventTick, "", "", fmt.Sprintf("maintenance: %d expired leases requeued, %d attempts timed out, %d queued tasks expired",
			len(maint.Requeued), len(maint.TimedOut), maint.Expired), nil)
	}
	t.breakers = make(map[string]*core.BreakerState, len(bs))
	for _, b := range bs {
		t.breakers[b.Key] = b
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		res, ok := lists[name]
		if p, configured := o.providers[name]; !ok && configured {
			// A provider no pool uses any more still has workers.
			res, ok = &listResult{}, true
			res.insts, res.err = p.List(ctx)
		}
		if !ok {
			t.rep.ListErrors[name] = "provider not configured"
			continue
		}
		if res.err != nil {
			t.rep.ListErrors[name] = res.err.Error()
			t.event(core.EventProviderError, "", "", fmt.Sprintf("provider %s: list failed, skipping orphan and vanished checks this tick: %v", name, res.err), nil)
			continue
		}
		m := make(map[string]*provider.Instance, len(res.insts))
		for _, in := range res.insts {
			if in.State == provider.InstanceGone {
				continue
			}
			m[in.ID] = in
			if in.WorkerID != "" {
				t.byWorker[name+"/"+in.WorkerID] = in
			}
		}
		t.lists[name] = m
	}
	return nil
}

// reconcileOrphans deletes instances tagged as ours that have no live row
// (or whose row points at another instance) once they are older than the
// pool's orphan grace. Only providers whose List succeeded are considered.
func (o *Orchestrator) reconcileOrphans(ctx context.Context, t *tick) {
	seen := map[string]bool{}
	for _, pname := range slices.Sorted(maps.Keys(t.lists)) {
		for _, id := range slices.Sorted(maps.Keys(t.lists[pname])) {
			in := t.lists[pname][id]
			if in.WorkerID == "" {
				continue
			}
			if wid, err := uuid.Parse(in.WorkerID); err == nil {
				if w, ok := t.byID[wid]; ok && (w.InstanceID == "" || w.InstanceID == in.ID) {
					continue // ours and accounted for (requested rows adopt below)
				}
			}
			key := pname + "/" + in.ID
			seen[key] = true
			first, ok := o.orphanSeen[key]
			if !ok {
				first = t.now
				o.orphanSeen[key] = first
			}
			grace := config.DefaultOrphanGrace
			if pc := o.cfg.Pools[in.Pool]; pc != nil {
				grace = settingsOf(in.Pool, pc).orphanGrace
			}
			if t.now.Sub(first) < grace {
				continue
			}
			err := o.providers[pname].Delete(ctx, in.ID)
			if err != nil && !errors.Is(err, provider.ErrNotFound) {
				t.event(core.EventProviderError, in.Pool, in.WorkerID, fmt.Sprintf("delete orphan instance %s at %s failed (will retry): %v", in.ID, pname, err), nil)
				continue
			}
			delete(o.orphanSeen, key)
			t.rep.OrphansDeleted = append(t.rep.OrphansDeleted, in.ID)
			t.event(core.EventWorkerOrphan, in.Pool, in.WorkerID,
				fmt.Sprintf("terminated orphan instance %s at %s: tagged with worker %s that has no live row, seen for %s (orphan_grace %s)",
					in.ID, pname, in.WorkerID, t.now.Sub(first).Round(time.Second), grace), nil)
		}
	}
	for key := range o.orphanSeen {
		pname, _, _ := strings.Cut(key, "/")
		if _, good := t.lists[pname]; good && !seen[key] {
			delete(o.orphanSeen, key)
		}
	}
}

// update applies a guarded state change to w and keeps the local copy in
// step. It returns false (and logs) when the row moved meanwhile.
func (o *Orchestrator) update(ctx context.Context, t *tick, w *core.Worker, p *store.WorkerUpdateParams) (bool, error) {
	p.Now, p.ID = t.now, w.ID
	if len(p.FromStates) == 0 {
		p.FromStates = []core.WorkerState{w.State}
	}
	nw, err := o.st.WorkerUpdate(ctx, p)
	if errors.Is(err, core.ErrConflict) || errors.Is(err, core.ErrNotFound) {
		o.log.Info("worker changed under the tick; skipped", "worker", w.ID, "state", w.State)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("update worker %s: %w", w.ID, err)
	}
	running := w.Running
	*w = *nw
	w.Running = running
	t.changed = true
	return true, nil
}

func ptr[T any](v T) *T { return &v }

// setState moves w to state with an event.
func (o *Orchestrator) setState(ctx context.Context, t *tick, w *core.Worker, to core.WorkerState, reason string, extra func(*store.WorkerUpdateParams)) (bool, error) {
	from := w.State
	p := &store.WorkerUpdateParams{State: ptr(to)}
	if extra != nil {
		extra(p)
	}
	ok, err := o.update(ctx, t, w, p)
	if ok {
		t.event(core.EventWorkerState, w.Pool, w.ID.String(), fmt.Sprintf("worker %s: %s → %s: %s", w.ID, from, to, reason),
			map[string]any{"from": from, "to": to, "instance": w.InstanceID, "placement": w.Placement})
	}
	return ok, err
}

// fail moves w to failed with class, requeues its leases this tick and
// feeds the breaker.
func (o *Orchestrator) fail(ctx context.Context, t *tick, w *core.Worker, class core.FailureClass, reason string) error {
	from := w.State
	heldTasks := w.Running > 0
	ok, err := o.update(ctx, t, w, &store.WorkerUpdateParams{State: ptr(core.WorkerFailed), Failure: ptr(class), Reason: ptr(reason)})
	if err != nil || !ok {
		return err
	}
	age := t.now.Sub(w.CreatedAt)
	t.rep.Failed[w.ID] = class
	t.requeue[w.ID] = true
	t.event(core.EventWorkerFailed, w.Pool, w.ID.String(), fmt.Sprintf("worker %s failed (%s) after %s in %s: %s", w.ID, class, age.Round(time.Second), from, reason),
		map[string]any{"class": class, "from": from, "age_s": int(age.Seconds()), "placement": w.Placement, "reason": reason, "held_tasks": heldTasks})
	o.m.failures.WithLabelValues(w.Pool, string(class)).Inc()
	if w.Placement == "" {
		return nil
	}
	st := t.breaker(w.Placement)
	switch {
	case breaker.TripsAtOnce(class):
		breaker.Trip(o.bcfg, st, t.now, fmt.Sprintf("%s error from the provider: %s", class, reason))
		t.dirty[st.Key] = true
		t.event(core.EventBreakerState, w.Pool, w.ID.String(), fmt.Sprintf("breaker opened at once for %s: %s (retrying cannot fix a %s error)", breaker.KeyLabel(st.Key), st.Reason, class), nil)
	case heldTasks:
		// The worker died while running a task: the task may have killed
		// it (a poison task), so it is not a start failure of the placement.
	case breaker.CountsAsStartFailure(class, w.ReadyAt, t.now, o.bcfg.StartGrace):
		tr := breaker.Record(o.bcfg, st, core.BreakerOutcome{Time: t.now, Success: false, Class: class, Worker: w.ID.String()}, t.now)
		t.dirty[st.Key] = true
		if tr != "" {
			t.event(core.EventBreakerState, w.Pool, w.ID.String(), fmt.Sprintf("breaker %s for %s: %s", tr, breaker.KeyLabel(st.Key), st.Reason), map[string]any{"transition": tr})
		}
	}
	return nil
}

// recordForeignFailure records a row that another component failed (the
// queue fails gpu-missing at registration): an event and the breaker.
func (o *Orchestrator) recordForeignFailure(t *tick, w *core.Worker) {
	age := t.now.Sub(w.CreatedAt)
	t.event(core.EventWorkerFailed, w.Pool, w.ID.String(), fmt.Sprintf("worker %s failed (%s) after %s: %s", w.ID, w.Failure, age.Round(time.Second), w.Reason),
		map[string]any{"class": w.Failure, "age_s": int(age.Seconds()), "placement": w.Placement, "reason": w.Reason, "held_tasks": w.Running > 0})
	o.m.failures.WithLabelValues(w.Pool, string(w.Failure)).Inc()
	if w.Placement == "" || w.Running > 0 {
		return
	}
	st := t.breaker(w.Placement)
	switch {
	case breaker.TripsAtOnce(w.Failure):
		breaker.Trip(o.bcfg, st, t.now, fmt.Sprintf("%s: %s", w.Failure, w.Reason))
		t.dirty[st.Key] = true
	case breaker.CountsAsStartFailure(w.Failure, w.ReadyAt, w.StateChangedAt, o.bcfg.StartGrace):
		if tr := breaker.Record(o.bcfg, st, core.BreakerOutcome{Time: t.now, Class: w.Failure, Worker: w.ID.String()}, t.now); tr != "" {
			t.event(core.EventBreakerState, w.Pool, w.ID.String(), fmt.Sprintf("breaker %s for %s: %s", tr, breaker.KeyLabel(st.Key), st.Reason), map[string]any{"transition": tr})
		}
		t.dirty[st.Key] = true
	}
}

func (o *Orchestrator) markReady(ctx context.Context, t *tick, w *core.Worker) error {
	ok, err := o.setState(ctx, t, w, core.WorkerReady, "first heartbeat received", func(p *store.WorkerUpdateParams) { p.ReadyAt = ptr(t.now) })
	if err != nil || !ok {
		return err
	}
	t.rep.Ready = append(t.rep.Ready, w.ID)
	if w.Placement != "" {
		st := t.breaker(w.Placement)
		tr := breaker.Record(o.bcfg, st, core.BreakerOutcome{Time: t.now, Success: true, Worker: w.ID.String()}, t.now)
		t.dirty[st.Key] = true
		if tr != "" {
			t.event(core.EventBreakerState, w.Pool, w.ID.String(), fmt.Sprintf("breaker %s for %s: canary worker %s reached ready", tr, breaker.KeyLabel(st.Key), w.ID), map[string]any{"transition": tr})
		}
	}
	return nil
}

// advance moves every live row along its lifecycle.
func (o *Orchestrator) advance(ctx context.Context, t *tick) error {
	tickD := tickOf(o.cfg)
	hbTimeout := heartbeatTimeoutOf(o.cfg)
	for _, w := range t.workers {
		ps := settingsOf(w.Pool, o.poolOrEmpty(w.Pool))
		list, listOK := t.lists[w.Provider]
		var inst *provider.Instance
		if listOK && w.InstanceID != "" {
			inst = list[w.InstanceID]
		}
		switch w.State {
		case core.WorkerRequested:
			if t.now.Sub(w.CreatedAt) < tickD || !listOK {
				continue
			}
			if in := t.byWorker[w.Provider+"/"+w.ID.String()]; in != nil {
				if _, err := o.setState(ctx, t, w, core.WorkerProvisioning, fmt.Sprintf("adopted instance %s found at the provider after an interrupted spawn", in.ID),
					func(p *store.WorkerUpdateParams) { p.InstanceID = ptr(in.ID); p.PricePerHour = ptr(in.PricePerHour) }); err != nil {
					return err
				}
				continue
			}
			if err := o.fail(ctx, t, w, core.FailProvider, "spawn interrupted: no instance carries this worker id at the provider"); err != nil {
				return err
			}
			continue
		case core.WorkerProvisioning, core.WorkerBooting, core.WorkerReady, core.WorkerDraining:
			if listOK && w.InstanceID != "" {
				switch {
				case inst == nil:
					n := w.MissingLists + 1
					if n >= 2 {
						class, why := core.FailVanished, fmt.Sprintf("instance %s missing from %d successive provider lists", w.InstanceID, n)
						// One Get, on this failure path only, tells a
						// preemption from a disappearance.
						if p := o.providers[w.Provider]; p != nil {
							if gi, gerr := p.Get(ctx, w.InstanceID); gerr == nil && gi.Preempted {
								class, why = core.FailPreempted, fmt.Sprintf("instance %s was preempted by the provider", w.InstanceID)
							}
						}
						if err := o.fail(ctx, t, w, class, why); err != nil {
							return err
						}
						continue
					}
					if _, err := o.update(ctx, t, w, &store.WorkerUpdateParams{MissingLists: ptr(n), FromStates: []core.WorkerState{w.State}}); err != nil {
						return err
					}
				case inst.Preempted:
					if err := o.fail(ctx, t, w, core.FailPreempted, fmt.Sprintf("instance %s was preempted by the provider", w.InstanceID)); err != nil {
						return err
					}
					continue
				case w.MissingLists > 0:
					if _, err := o.update(ctx, t, w, &store.WorkerUpdateParams{MissingLists: ptr(0)}); err != nil {
						return err
					}
				}
			}
		}

		switch w.State {
		case core.WorkerProvisioning:
			switch {
			case w.LastHeartbeatAt != nil:
				if ok, err := o.setState(ctx, t, w, core.WorkerBooting, "agent registered", nil); err != nil || !ok {
					if err != nil {
						return err
					}
					continue
				}
				if err := o.markReady(ctx, t, w); err != nil {
					return err
				}
			case inst != nil && inst.State == provider.InstanceRunning:
				if _, err := o.setState(ctx, t, w, core.WorkerBooting, fmt.Sprintf("instance %s is running", w.InstanceID), nil); err != nil {
					return err
				}
			case listOK && t.now.Sub(w.CreatedAt) > ps.provisionTimeout:
				// Fail closed: without a good list this tick we cannot know
				// whether the instance is running, so the timeout waits.
				if err := o.fail(ctx, t, w, core.FailProvisionTimeout, fmt.Sprintf("instance not running %s after creation (provision_timeout %s)", t.now.Sub(w.CreatedAt).Round(time.Second), ps.provisionTimeout)); err != nil {
					return err
				}
			}
		case core.WorkerBooting:
			switch {
			case w.LastHeartbeatAt != nil:
				if err := o.markReady(ctx, t, w); err != nil {
					return err
				}
			case t.now.Sub(w.CreatedAt) > ps.bootTimeout:
				if err := o.fail(ctx, t, w, core.FailBootTimeout, fmt.Sprintf("no heartbeat %s after creation (boot_timeout %s)", t.now.Sub(w.CreatedAt).Round(time.Second), ps.bootTimeout)); err != nil {
					return err
				}
			}
		case core.WorkerReady, core.WorkerDraining:
			last := w.LastHeartbeatAt
			if last == nil {
				last = w.ReadyAt
			}
			if last != nil && t.now.Sub(*last) > hbTimeout {
				if err := o.fail(ctx, t, w, core.FailHeartbeatLost, fmt.Sprintf("last heartbeat %s ago (heartbeat_timeout %s)", t.now.Sub(*last).Round(time.Second), hbTimeout)); err != nil {
					return err
				}
				continue
			}
			if w.State == core.WorkerDraining {
				switch {
				case w.Running == 0:
					if _, err := o.setState(ctx, t, w, core.WorkerTerminating, "drained: no running tasks", nil); err != nil {
						return err
					}
				case t.now.Sub(w.StateChangedAt) > ps.drainTimeout:
					if ok, err := o.setState(ctx, t, w, core.WorkerTerminating, fmt.Sprintf("drain_timeout %s passed with %d tasks still running; they are requeued", ps.drainTimeout, w.Running), nil); err != nil {
						return err
					} else if ok {
						t.requeue[w.ID] = true
					}
				}
			}
		}
	}

	// failed → terminating, terminating → terminated.
	for _, w := range t.workers {
		if w.State == core.WorkerFailed {
			if _, ours := t.rep.Failed[w.ID]; !ours {
				o.recordForeignFailure(t, w)
			}
			if w.Running > 0 {
				t.requeue[w.ID] = true
			}
			if _, err := o.setState(ctx, t, w, core.WorkerTerminating, "terminating failed worker", nil); err != nil {
				return err
			}
		}
		if w.State != core.WorkerTerminating {
			continue
		}
		if w.Running > 0 {
			t.requeue[w.ID] = true
		}
		if err := o.terminate(ctx, t, w); err != nil {
			return err
		}
	}
	return nil
}

func (o *Orchestrator) poolOrEmpty(name string) *config.PoolConfig {
	if pc := o.cfg.Pools[name]; pc != nil {
		return pc
	}
	return &config.PoolConfig{}
}

// terminate drives a terminating row toward terminated: delete the instance
// until the provider says it is gone.
func (o *Orchestrator) terminate(ctx context.Context, t *tick, w *core.Worker) error {
	gone := func(why string) error {
		ok, err := o.setState(ctx, t, w, core.WorkerTerminated, why, func(p *store.WorkerUpdateParams) { p.TerminatedAt = ptr(t.now) })
		if ok {
			t.rep.Terminated = append(t.rep.Terminated, w.ID)
		}
		return err
	}
	if w.InstanceID == "" {
		return gone("no instance was created")
	}
	if list, ok := t.lists[w.Provider]; ok && w.DeleteAttempts > 0 && list[w.InstanceID] == nil {
		return gone(fmt.Sprintf("instance %s no longer listed by the provider", w.InstanceID))
	}
	p, ok := o.providers[w.Provider]
	if !ok {
		t.event(core.EventProviderError, w.Pool, w.ID.String(), fmt.Sprintf("cannot delete instance %s: provider %q is not configured", w.InstanceID, w.Provider), nil)
		return nil
	}
	err := p.Delete(ctx, w.InstanceID)
	if errors.Is(err, provider.ErrNotFound) {
		return gone(fmt.Sprintf("instance %s is gone at the provider", w.InstanceID))
	}
	attempts := w.DeleteAttempts + 1
	if _, uerr := o.update(ctx, t, w, &store.WorkerUpdateParams{DeleteAttempts: ptr(attempts)}); uerr != nil {
		return uerr
	}
	if err != nil {
		t.event(core.EventProviderError, w.Pool, w.ID.String(), fmt.Sprintf("delete instance %s failed (attempt %d, will retry): %v", w.InstanceID, attempts, err), nil)
	}
	return nil
}

// requeueLost requeues, in one query, every lease held by a worker that
// failed or is being terminated this tick.
func (o *Orchestrator) requeueLost(ctx context.Context, t *tick) error {
	if len(t.requeue) == 0 {
		return nil
	}
	ids := slices.SortedFunc(maps.Keys(t.requeue), func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	tasks, err := o.st.TaskRequeueLost(ctx, &store.TaskRequeueLostParams{Now: t.now, WorkerIDs: ids})
	if err != nil {
		return fmt.Errorf("tick: requeue leases of failed workers: %w", err)
	}
	t.rep.Requeued += len(tasks)
	for _, tk := range tasks {
		if tk.State == core.TaskFailed {
			t.events = append(t.events, &core.Event{Time: t.now, Kind: core.EventTaskFailed, Pool: tk.Pool, TaskID: tk.ID.String(), Message: fmt.Sprintf("task %s failed: %s", tk.ID, tk.Error)})
		} else {
			t.events = append(t.events, &core.Event{Time: t.now, Kind: core.EventTaskRequeued, Pool: tk.Pool, TaskID: tk.ID.String(), Message: fmt.Sprintf("task %s requeued: its worker was lost (%d/%d losses)", tk.ID, tk.Lost, tk.MaxLost)})
		}
	}
	if len(tasks) > 0 {
		t.changed = true
		if o.q != nil {
			// Requeued tasks are claimable now: wake long-poll claimers.
			o.q.Signal()
		}
	}
	return nil
}

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

// place spawns up to n workers on the pool's candidates, in order, skipping
// placements whose breaker refuses and moving to the next candidate on a
// capacity (or quota) error. It returns how many were created and the
// reasons the rest were not.
func (o *Orchestrator) place(ctx context.Context, t *tick, ps poolSettings, n int) (int, []string, error) {
	placements := ps.cfg.Placements()
	p := o.providers[ps.cfg.Provider]
	if len(placements) == 0 {
		placements = []provider.Placement{{}}
	}
	exhausted := map[int]bool{}
	var reasons []string
	addReason := func(r string) {
		if !slices.Contains(reasons, r) {
			reasons = append(reasons, r)
		}
	}
	spawned := 0
	for spawned < n {
		created := false
		stop := false
		var refusals []string
		for i, pl := range placements {
			if exhausted[i] {
				continue
			}
			key := pl.Key(ps.name)
			st := t.breaker(key)
			before := st.Status
			v := breaker.Allow(o.bcfg, st, t.now)
			if st.Status != before {
				t.dirty[key] = true
				t.event(core.EventBreakerState, ps.name, "", fmt.Sprintf("breaker open→half-open for %s: cooldown over", breaker.KeyLabel(key)), map[string]any{"transition": "open→half-open"})
			}
			if !v.Allowed {
				refusals = append(refusals, v.Reason)
				continue
			}
			w, err := o.spawn(ctx, t, ps, pl, p, v.Canary)
			if err != nil && w == nil {
				return spawned, reasons, err
			}
			if err == nil {
				created = true
				spawned++
				t.rep.Spawned = append(t.rep.Spawned, w.ID)
				break
			}
			kind := provider.KindOf(err)
			switch kind {
			case provider.KindCapacity, provider.KindQuota, provider.KindInvalid:
				exhausted[i] = true
				refusals = append(refusals, fmt.Sprintf("%s at %s: %v", kind, breaker.KeyLabel(key), err))
				continue
			default:
				addReason(fmt.Sprintf("not scaling up further this tick: provider %s: %v", ps.cfg.Provider, err))
				stop = true
			}
			break
		}
		if stop {
			break
		}
		if !created {
			for _, r := range refusals {
				addReason("not scaling up: " + r)
			}
			if len(refusals) == 0 {
				addReason("not scaling up: no candidate placement left this tick")
			}
			break
		}
	}
	if spawned < n && len(reasons) > 0 {
		for _, r := range reasons {
			t.event(core.EventScaleBlocked, ps.name, "", fmt.Sprintf("%d of %d wanted workers not spawned: %s", n-spawned, n, r), nil)
		}
	}
	return spawned, reasons, nil
}

// spawn inserts the row first (requested, with the token's hash), then asks
// the provider, then records the instance. On a provider error the row is
// failed with the error's class and the error is returned with the row.
func (o *Orchestrator) spawn(ctx context.Context, t *tick, ps poolSettings, pl provider.Placement, p provider.Provider, canary bool) (*core.Worker, error) {
	token, err := newToken()
	if err != nil {
		return nil, fmt.Errorf("spawn: make worker token: %w", err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("spawn: new worker id: %w", err)
	}
	sum := sha256.Sum256([]byte(token))
	w := &core.Worker{
		ID: id, Pool: ps.name, Provider: ps.cfg.Provider, Placement: pl.Key(ps.name), GPUType: pl.GPU, Region: pl.Region,
		State: core.WorkerRequested, TokenHash: hex.EncodeToString(sum[:]), Concurrency: ps.concurrency,
		CreatedAt: t.now, StateChangedAt: t.now,
	}
	if err := o.st.WorkerInsert(ctx, w); err != nil {
		return nil, fmt.Errorf("spawn: insert worker row: %w", err)
	}
	t.changed = true
	if canary {
		st := t.breaker(w.Placement)
		breaker.MarkCanary(st, w.ID.String(), t.now)
		t.dirty[st.Key] = true
	}
	env := make(map[string]string, len(ps.cfg.Env)+3)
	maps.Copy(env, ps.cfg.Env)
	env["DROVER_SERVER"] = o.cfg.PublicURL
	env["DROVER_WORKER_ID"] = id.String()
	env["DROVER_TOKEN"] = token
	inst, cerr := p.Create(ctx, &provider.CreateRequest{WorkerID: id.String(), Pool: ps.name, Placement: pl, Image: ps.cfg.Image, Env: env})
	if cerr != nil {
		class := classOf(cerr)
		if err := o.fail(ctx, t, w, class, redact(cerr.Error(), token)); err != nil {
			return nil, err
		}
		// The failure is recorded (event, breaker) now; move the row on in
		// this same tick so that the next tick does not see a failed row it
		// did not record and count it a second time. An instance a
		// half-failed create may have left is found by List as an orphan.
		if _, err := o.setState(ctx, t, w, core.WorkerTerminating, "create failed", nil); err != nil {
			return nil, err
		}
		return w, cerr
	}
	if _, err := o.setState(ctx, t, w, core.WorkerProvisioning, fmt.Sprintf("created instance %s at %s", inst.ID, breaker.KeyLabel(w.Placement)),
		func(up *store.WorkerUpdateParams) {
			up.InstanceID = ptr(inst.ID)
			up.PricePerHour = ptr(inst.PricePerHour)
		}); err != nil {
		return nil, err
	}
	what := "spawned"
	if canary {
		what = "spawned canary"
	}
	t.event(core.EventWorkerSpawn, ps.name, id.String(), fmt.Sprintf("%s worker %s on %s (instance %s)", what, id, breaker.KeyLabel(w.Placement), inst.ID),
		map[string]any{"placement": w.Placement, "instance": inst.ID, "canary": canary})
	o.m.spawns.WithLabelValues(ps.name).Inc()
	return w, nil
}

func classOf(err error) core.FailureClass {
	switch provider.KindOf(err) {
	case provider.KindCapacity:
		return core.FailCapacity
	case provider.KindQuota:
		return core.FailQuota
	case provider.KindInvalid:
		return core.FailInvalidRequest
	}
	return core.FailProvider
}

func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// blockedRepeat is how often an unchanged blocked-only tick is re-recorded.
const blockedRepeat = time.Minute

// record persists changed breakers and the tick's events in one batch.
func (o *Orchestrator) record(ctx context.Context, t *tick) error {
	for _, key := range slices.Sorted(maps.Keys(t.dirty)) {
		if err := o.st.BreakerPut(ctx, t.breakers[key]); err != nil {
			return fmt.Errorf("tick: save breaker %s: %w", key, err)
		}
	}
	blocked := strings.Join(t.rep.Blocked, "; ")
	emit := t.changed
	if !emit && blocked != "" && (blocked != o.lastBlocked || t.now.Sub(o.lastBlockedAt) >= blockedRepeat) {
		emit = true
	}
	if emit {
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(t.rep.Decisions)) {
			parts = append(parts, "pool "+name+": "+t.rep.Decisions[name].Reason)
		}
		msg := strings.Join(parts, "; ")
		if blocked != "" {
			msg += "; " + blocked
		}
		if len(t.rep.ListErrors) > 0 {
			msg += fmt.Sprintf("; provider list failed for %s: destructive reconciliation skipped", strings.Join(slices.Sorted(maps.Keys(t.rep.ListErrors)), ", "))
		}
		t.events = append(t.events, &core.Event{Time: t.now, Kind: core.EventTick, Message: msg, Data: mustJSON(map[string]any{
			"decisions": t.rep.Decisions, "blocked": t.rep.Blocked, "list_errors": t.rep.ListErrors,
			"spawned": len(t.rep.Spawned), "failed": len(t.rep.Failed), "requeued": t.rep.Requeued,
		})})
		if blocked != "" {
			o.lastBlocked, o.lastBlockedAt = blocked, t.now
		}
	}
	if blocked == "" {
		o.lastBlocked = ""
	}
	if len(t.events) == 0 {
		return nil
	}
	if err := o.st.EventInsertMany(ctx, t.events); err != nil {
		return fmt.Errorf("tick: record %d events: %w", len(t.events), err)
	}
	return nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
