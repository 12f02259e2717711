package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/maintenance"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
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
	// SweepOutputs, when set, deletes a batch of expired task outputs; the
	// leader's outputs maintenance service calls it (outputsvc Sweep).
	SweepOutputs func(ctx context.Context) (int, error)
	// MaintenancePoll bounds a maintenance service's real-time wait
	// (maintenance.DefaultPoll when zero).
	MaintenancePoll time.Duration
	// OnMaintenancePass, when set, is called after every maintenance pass
	// with the service's name and error (tests wait on it).
	OnMaintenancePass func(name string, err error)
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
	// maint is the leader's maintenance (maintain.go): started while this
	// replica leads.
	maint *maintenance.Group

	mu sync.Mutex // one tick at a time; guards the fields below
	// orphanSeen remembers when each orphan instance ("provider/id") was
	// first seen. It lives in memory: after a restart the grace starts
	// again, which errs on the side of not killing.
	orphanSeen map[string]time.Time
	// lastBlocked and lastBlockedAt dedupe blocked-only tick events.
	lastBlocked   string
	lastBlockedAt time.Time
	// fleet is the leader's copy of the live worker rows (fleet.go).
	fleet fleet
	// fleetStale asks the next tick to reload the fleet in full (set when
	// leadership changes, from the elector's goroutine).
	fleetStale atomic.Bool
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
	// Every provider call of a tick has a deadline (providers.*.call_timeout):
	// a hung cloud API costs a tick at most that, counted as transient.
	providers := make(map[string]provider.Provider, len(d.Providers))
	for name, p := range d.Providers {
		providers[name] = provider.WithDeadline(p, d.Config.CallTimeout(name))
	}
	o := &Orchestrator{
		st:         d.Store,
		q:          d.Queue,
		providers:  providers,
		clock:      d.Clock,
		cfg:        d.Config,
		log:        d.Logger,
		bcfg:       d.Config.BreakerConfig(),
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
	if o.elector == nil {
		o.elector = NewElector(o.st, o.clock, ElectorConfig{
			TTL:      o.cfg.Leader.TTL.D(),
			Interval: o.cfg.Leader.Interval.D(),
		}, o.log)
	}
	if o.maint, err = o.newMaintenance(d); err != nil {
		return nil, fmt.Errorf("orchestrator: %w", err)
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

// run is one tick's passes, in order.
func (o *Orchestrator) run(ctx context.Context, t *tick) error {
	if err := o.observe(ctx, t); err != nil {
		return err
	}
	o.reconcileOrphans(ctx, t)
	if err := o.applyRequests(ctx, t, t.requests); err != nil {
		return err
	}
	if err := o.advance(ctx, t); err != nil {
		return err
	}
	if err := o.requeueLost(ctx, t); err != nil {
		return err
	}
	if err := o.scale(ctx, t); err != nil {
		return err
	}
	return o.record(ctx, t)
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
	// requests are the pending worker requests read this tick.
	requests []*store.WorkerRequest
	// spawnedSpend estimates the hourly price of this tick's spawns so far
	// (the global spend cap, spend.go).
	spawnedSpend float64
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
	// Every leader-only write of this tick checks the term it was elected
	// in; a replica deposed meanwhile writes nothing (store.ErrFenced).
	if f, ok := o.elector.Fence(); ok {
		ctx = store.WithFence(ctx, f)
	}

	if err := o.run(ctx, t); err != nil {
		// A write may or may not have happened: the fleet copy is
		// uncertain, the next tick reads it in full.
		o.fleet.invalidate()
		return nil, err
	}
	t.rep.Duration = time.Since(start)
	t.rep.Events = t.events
	o.m.observe(t)
	o.xm.observe(o, t)
	return t.rep, nil
}
