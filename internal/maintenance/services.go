package maintenance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
)

// Service names.
const (
	Leases       = "leases"
	Timeouts     = "timeouts"
	QueueTTL     = "queue-ttl"
	Retention    = "retention"
	Workers      = "workers"
	PlannerStats = "planner-stats"
	Outputs      = "outputs"
)

// Default intervals (Intervals' zero fields).
const (
	DefaultLeaseInterval     = 2 * time.Second
	DefaultTimeoutInterval   = 2 * time.Second
	DefaultQueueTTLInterval  = time.Minute
	DefaultRetentionInterval = 10 * time.Minute
	DefaultWorkersInterval   = 10 * time.Minute
	DefaultAnalyzeInterval   = 10 * time.Minute
	DefaultOutputsInterval   = time.Minute
)

// Intervals sets each service's interval; zero fields take the defaults.
type Intervals struct {
	Leases, Timeouts, QueueTTL, Retention, Workers, PlannerStats, Outputs time.Duration
}

// Config wires the leader's maintenance services.
type Config struct {
	// Queue decides the task rules (leases, timeouts, queue TTL); when nil
	// those three services are left out.
	Queue *queue.Service
	// Store is the database (required).
	Store store.Store
	// Clock is the only source of time (required).
	Clock core.Clock
	// Logger receives failed passes and what the passes did.
	Logger *slog.Logger
	// Gate runs before each pass of a started service: only the leader
	// passes, under its fence.
	Gate Gate
	// Retention is the age past which events, logs, final tasks, samples
	// and terminated worker rows are deleted (required, > 0).
	Retention time.Duration
	// LeaseGrace is how long past its expiry a lease waits for the control
	// loop (see queue.Service.ExpireLeases).
	LeaseGrace time.Duration
	// Intervals of the services.
	Intervals Intervals
	// Wake is called after a pass that changed the queue (requeues,
	// failures, expiries), so the control loop reads demand again at once.
	Wake func(reason string)
	// OnReport receives what each task-rule pass did (metrics, events).
	OnReport func(ctx context.Context, rep queue.MaintainReport)
	// SweepOutputs, when set, deletes expired task outputs: one batch per
	// call, returning how many (outputsvc.Service.Sweep).
	SweepOutputs func(ctx context.Context) (int, error)
	// Poll and OnPass are passed to every service (ServiceConfig).
	Poll   time.Duration
	OnPass func(name string, err error)
}

// sweepBatch is the largest batch SweepOutputs deletes per call.
const sweepBatch = 1000

// New returns the stopped group of the leader's services: leases,
// timeouts (and stalls), queue-ttl, retention, workers, planner-stats,
// and outputs when SweepOutputs is set.
func New(cfg Config) (*Group, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("maintenance: Config.Store is required")
	case cfg.Clock == nil:
		return nil, errors.New("maintenance: Config.Clock is required")
	case cfg.Retention <= 0:
		return nil, fmt.Errorf("maintenance: retention must be positive (got %s)", cfg.Retention)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	iv := cfg.Intervals
	wake := func(reason string) {
		if cfg.Wake != nil {
			cfg.Wake(reason)
		}
	}
	report := func(ctx context.Context, rep queue.MaintainReport) {
		if len(rep.Requeued)+len(rep.TimedOut)+len(rep.Stalled)+rep.Expired == 0 {
			return
		}
		if cfg.OnReport != nil {
			cfg.OnReport(ctx, rep)
		}
		wake("maintenance")
	}
	var specs []ServiceConfig
	if q := cfg.Queue; q != nil {
		specs = append(specs,
			ServiceConfig{Name: Leases, Interval: cmp.Or(iv.Leases, DefaultLeaseInterval), Pass: func(ctx context.Context) error {
				ts, err := q.ExpireLeases(ctx, cfg.LeaseGrace)
				report(ctx, queue.MaintainReport{Requeued: ts})
				return err
			}},
			ServiceConfig{Name: Timeouts, Interval: cmp.Or(iv.Timeouts, DefaultTimeoutInterval), Pass: func(ctx context.Context) error {
				timedOut, stalled, err := q.TimeOutAttempts(ctx)
				report(ctx, queue.MaintainReport{TimedOut: timedOut, Stalled: stalled})
				return err
			}},
			ServiceConfig{Name: QueueTTL, Interval: cmp.Or(iv.QueueTTL, DefaultQueueTTLInterval), Pass: func(ctx context.Context) error {
				n, err := q.ExpireQueuedTTL(ctx)
				report(ctx, queue.MaintainReport{Expired: n})
				return err
			}},
		)
	}
	st, log := cfg.Store, cfg.Logger
	specs = append(specs,
		ServiceConfig{Name: Retention, Interval: cmp.Or(iv.Retention, DefaultRetentionInterval), Pass: func(ctx context.Context) error {
			before := cfg.Clock.Now().Add(-cfg.Retention)
			n, err := st.Prune(ctx, before)
			if err != nil {
				return fmt.Errorf("prune rows older than retention: %w", err)
			}
			ns, err := st.SamplePrune(ctx, before)
			if err != nil {
				return fmt.Errorf("prune samples older than retention: %w", err)
			}
			if n+ns > 0 {
				log.Info("pruned rows older than retention", "rows", n, "samples", ns, "retention", cfg.Retention)
			}
			return nil
		}},
		ServiceConfig{Name: Workers, Interval: cmp.Or(iv.Workers, DefaultWorkersInterval), Pass: func(ctx context.Context) error {
			n, err := st.WorkerPrune(ctx, cfg.Clock.Now().Add(-cfg.Retention))
			if err != nil {
				return fmt.Errorf("delete terminated workers: %w", err)
			}
			if n > 0 {
				log.Info("deleted terminated worker rows older than retention", "rows", n, "retention", cfg.Retention)
			}
			return nil
		}},
		ServiceConfig{Name: PlannerStats, Interval: cmp.Or(iv.PlannerStats, DefaultAnalyzeInterval), Pass: func(ctx context.Context) error {
			if err := st.Analyze(ctx); err != nil {
				return fmt.Errorf("refresh planner statistics: %w", err)
			}
			return nil
		}},
	)
	if sweep := cfg.SweepOutputs; sweep != nil {
		specs = append(specs, ServiceConfig{Name: Outputs, Interval: cmp.Or(iv.Outputs, DefaultOutputsInterval), Pass: func(ctx context.Context) error {
			for {
				n, err := sweep(ctx)
				if err != nil {
					return fmt.Errorf("sweep expired outputs: %w", err)
				}
				if n > 0 {
					log.Info("expired outputs deleted", "count", n)
				}
				if n < sweepBatch {
					return nil
				}
			}
		}})
	}
	services := make([]*Service, 0, len(specs))
	for _, sc := range specs {
		sc.Clock, sc.Logger, sc.Gate, sc.Poll, sc.OnPass = cfg.Clock, cfg.Logger, cfg.Gate, cfg.Poll, cfg.OnPass
		s, err := NewService(sc)
		if err != nil {
			return nil, err
		}
		services = append(services, s)
	}
	return NewGroup(services...), nil
}

// Service returns the group's service named name (nil if none).
func (g *Group) Service(name string) *Service {
	for _, s := range g.services {
		if s.name == name {
			return s
		}
	}
	return nil
}
