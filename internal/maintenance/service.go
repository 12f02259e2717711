package maintenance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// DefaultPoll bounds how long a started service waits in real time before
// it reads the clock again. The clock decides when a pass is due; the
// wait only paces the reading, so a clock that jumps (a fake clock) is
// followed within DefaultPoll, and at once after Kick.
const DefaultPoll = time.Second

// Pass is one run of a service's job. It returns an error when the job
// failed; the service logs it and tries again at its next interval.
type Pass func(ctx context.Context) error

// Gate decides, before each pass of a started service, whether this
// replica may run it, and returns the context the pass runs under (the
// leader's fence, store.WithFence). A nil Gate always runs.
type Gate func(ctx context.Context) (context.Context, bool)

// Service runs one maintenance job every Interval of the injected clock,
// while started (Runner), or when a caller that drives the clock itself
// asks (RunDue). The first pass is due at once.
type Service struct {
	lifecycle

	name     string
	interval time.Duration
	pass     Pass
	clock    core.Clock
	log      *slog.Logger
	poll     time.Duration
	gate     Gate
	onPass   func(name string, err error)

	kick chan struct{}

	// passMu serialises passes (a started loop and RunDue never overlap)
	// and guards next.
	passMu sync.Mutex
	next   time.Time
}

// ServiceConfig configures a Service. Name, Interval, Pass and Clock are
// required.
type ServiceConfig struct {
	// Name names the service in logs and reports ("leases", "retention").
	Name string
	// Interval is the time between two passes, on Clock.
	Interval time.Duration
	// Pass is the job.
	Pass Pass
	// Clock is the only source of time.
	Clock core.Clock
	// Logger receives failed passes (default slog.Default()).
	Logger *slog.Logger
	// Poll bounds one real-time wait of a started service (DefaultPoll).
	Poll time.Duration
	// Gate is consulted before each pass of a started service.
	Gate Gate
	// OnPass, when set, is called after every pass that ran, with its
	// error (tests wait on it instead of sleeping).
	OnPass func(name string, err error)
}

// NewService returns a stopped service.
func NewService(cfg ServiceConfig) (*Service, error) {
	switch {
	case cfg.Name == "":
		return nil, errors.New("maintenance: ServiceConfig.Name is required")
	case cfg.Interval <= 0:
		return nil, fmt.Errorf("maintenance: service %s: interval must be positive (got %s)", cfg.Name, cfg.Interval)
	case cfg.Pass == nil:
		return nil, fmt.Errorf("maintenance: service %s: Pass is required", cfg.Name)
	case cfg.Clock == nil:
		return nil, fmt.Errorf("maintenance: service %s: Clock is required", cfg.Name)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	return &Service{name: cfg.Name, interval: cfg.Interval, pass: cfg.Pass, clock: cfg.Clock, log: cfg.Logger,
		poll: cfg.Poll, gate: cfg.Gate, onPass: cfg.OnPass, kick: make(chan struct{}, 1)}, nil
}

// Name returns the service's name.
func (s *Service) Name() string { return s.name }

// Interval returns the time between two passes.
func (s *Service) Interval() time.Duration { return s.interval }

// Start begins the service's loop (see Runner). Each start makes a pass
// due at once: a replica that just won leadership catches up first.
func (s *Service) Start(ctx context.Context) error {
	s.lifecycle.start(ctx, func(context.Context) {
		s.passMu.Lock()
		s.next = time.Time{}
		s.passMu.Unlock()
	}, s.loop)
	return nil
}

// Stop ends the loop and waits for a pass in progress (see Runner).
func (s *Service) Stop() { s.lifecycle.stop() }

// Kick asks a started service to read the clock now (non-blocking).
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Service) loop(ctx context.Context) {
	for {
		s.runIfDue(ctx, true)
		wait := s.poll
		s.passMu.Lock()
		if d := s.next.Sub(s.clock.Now()); d > 0 && d < wait {
			wait = d
		}
		s.passMu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// RunDue runs the pass in the caller's goroutine when Interval has passed
// on the clock since the last one (or none ran yet), and reports whether
// it ran and its error. It is for callers that drive the clock and the
// control loop themselves (the simulator, tests, benchmarks); it does not
// consult the Gate: the caller decides who leads.
func (s *Service) RunDue(ctx context.Context) (bool, error) {
	return s.runIfDue(ctx, false)
}

// RunNow runs the pass at once in the caller's goroutine, due or not.
func (s *Service) RunNow(ctx context.Context) error {
	s.passMu.Lock()
	defer s.passMu.Unlock()
	return s.runLocked(ctx, s.clock.Now())
}

func (s *Service) runIfDue(ctx context.Context, gated bool) (bool, error) {
	s.passMu.Lock()
	defer s.passMu.Unlock()
	now := s.clock.Now()
	if !s.next.IsZero() && now.Before(s.next) {
		return false, nil
	}
	if ctx.Err() != nil {
		return false, nil
	}
	if gated && s.gate != nil {
		gctx, ok := s.gate(ctx)
		if !ok {
			return false, nil
		}
		ctx = gctx
	}
	return true, s.runLocked(ctx, now)
}

func (s *Service) runLocked(ctx context.Context, now time.Time) error {
	s.next = now.Add(s.interval)
	err := s.pass(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Error("maintenance pass failed", "service", s.name, "err", err)
	}
	if s.onPass != nil {
		s.onPass(s.name, err)
	}
	return err
}
