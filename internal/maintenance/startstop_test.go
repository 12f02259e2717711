package maintenance

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// probe is a service whose pass records the clock at each run and reports
// it on a channel; block, when set, holds the pass until its context ends.
type probe struct {
	clock  *core.FakeClock
	svc    *Service
	passes chan time.Time
	block  atomic.Bool
	// inside is signalled when a blocking pass has started; finished is
	// set by the pass just before it returns.
	inside   chan struct{}
	finished atomic.Bool
}

func newProbe(t *testing.T, interval time.Duration) *probe {
	t.Helper()
	p := &probe{clock: core.NewFakeClock(t0), passes: make(chan time.Time, 100), inside: make(chan struct{}, 100)}
	svc, err := NewService(ServiceConfig{Name: "probe", Interval: interval, Clock: p.clock, Pass: func(ctx context.Context) error {
		if p.block.Load() {
			p.inside <- struct{}{}
			<-ctx.Done()
			p.finished.Store(true)
		}
		p.passes <- p.clock.Now()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	p.svc = svc
	return p
}

// next waits for the next pass (the test's deadline bounds the wait).
func (p *probe) next(t *testing.T) time.Time {
	t.Helper()
	select {
	case at := <-p.passes:
		return at
	case <-t.Context().Done():
		t.Fatal("no pass")
	}
	return time.Time{}
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// A started service passes at once, then once per interval of the
// injected clock, never before.
func TestServiceRunsOnTheClock(t *testing.T) {
	p := newProbe(t, time.Minute)
	if err := p.svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer p.svc.Stop()
	if at := p.next(t); !at.Equal(t0) {
		t.Fatalf("first pass at %s, want at start %s", at, t0)
	}
	p.clock.Advance(59 * time.Second)
	p.svc.Kick()
	p.clock.Advance(time.Second)
	p.svc.Kick()
	// Had the loop passed at +59s, that pass would be the one read here.
	if at := p.next(t); !at.Equal(t0.Add(time.Minute)) {
		t.Fatalf("second pass at %s, want one interval later %s", at, t0.Add(time.Minute))
	}
	p.clock.Advance(time.Minute)
	p.svc.Kick()
	if at := p.next(t); !at.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("third pass at %s", at)
	}
}

// Start twice runs one loop; Stop before Start returns at once; Stop
// waits for the pass in progress; a stopped service starts again.
func TestStartStopContract(t *testing.T) {
	t.Run("stop before start", func(t *testing.T) {
		p := newProbe(t, time.Minute)
		p.svc.Stop()
		if !isDone(p.svc.Stopped()) {
			t.Fatal("a never-started service does not report stopped")
		}
		if isDone(p.svc.Started()) {
			t.Fatal("a never-started service reports started")
		}
	})

	t.Run("start twice", func(t *testing.T) {
		p := newProbe(t, time.Minute)
		ctx := t.Context()
		if err := p.svc.Start(ctx); err != nil {
			t.Fatal(err)
		}
		started, stopped := p.svc.Started(), p.svc.Stopped()
		if err := p.svc.Start(ctx); err != nil {
			t.Fatalf("second Start: %v", err)
		}
		if p.svc.Started() != started || p.svc.Stopped() != stopped {
			t.Fatal("a second Start began a new run")
		}
		if !isDone(started) || isDone(stopped) {
			t.Fatal("running service: want started and not stopped")
		}
		p.next(t)
		// One loop: a kick at a time not yet due runs nothing, and the next
		// due time gives exactly one pass.
		p.clock.Advance(time.Minute)
		p.svc.Kick()
		p.next(t)
		p.svc.Stop()
		if len(p.passes) != 0 {
			t.Fatalf("%d extra passes: two loops ran", len(p.passes))
		}
		if !isDone(stopped) {
			t.Fatal("Stopped not closed after Stop")
		}
		p.svc.Stop() // stopping twice is a no-op
	})

	t.Run("stop waits for the running pass", func(t *testing.T) {
		p := newProbe(t, time.Minute)
		p.block.Store(true)
		if err := p.svc.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		<-p.inside
		p.svc.Stop()
		if !p.finished.Load() {
			t.Fatal("Stop returned before the pass in progress ended")
		}
		if !isDone(p.svc.Stopped()) {
			t.Fatal("Stopped not closed")
		}
	})

	t.Run("restart", func(t *testing.T) {
		p := newProbe(t, time.Hour)
		for i := range 3 {
			if err := p.svc.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			// Each start passes at once, whatever the interval: a replica
			// that wins leadership again catches up first.
			if at := p.next(t); !at.Equal(t0) {
				t.Fatalf("run %d: pass at %s", i, at)
			}
			p.svc.Stop()
			if !isDone(p.svc.Stopped()) {
				t.Fatalf("run %d: not stopped", i)
			}
		}
	})

	t.Run("context end stops the run", func(t *testing.T) {
		p := newProbe(t, time.Minute)
		ctx, cancel := context.WithCancel(t.Context())
		if err := p.svc.Start(ctx); err != nil {
			t.Fatal(err)
		}
		p.next(t)
		stopped := p.svc.Stopped()
		cancel()
		<-stopped
		// A run that ended by itself may start again.
		if err := p.svc.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		p.next(t)
		p.svc.Stop()
	})
}

// A group starts and stops its services together, and restarts.
func TestGroup(t *testing.T) {
	a, b := newProbe(t, time.Minute), newProbe(t, time.Minute)
	b.block.Store(true)
	g := NewGroup(a.svc, b.svc)
	g.Stop() // before start: nothing
	for range 2 {
		if err := g.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := g.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !isDone(g.Started()) || !isDone(a.svc.Started()) || !isDone(b.svc.Started()) {
			t.Fatal("group started but not every service")
		}
		a.next(t)
		<-b.inside
		g.Stop()
		if !isDone(a.svc.Stopped()) || !isDone(b.svc.Stopped()) || !isDone(g.Stopped()) {
			t.Fatal("group stopped but a service still runs")
		}
		if !b.finished.Load() {
			t.Fatal("group Stop returned before a pass in progress ended")
		}
		b.finished.Store(false)
		b.next(t)
	}
}

// RunDue runs each service only when due, in the caller's goroutine.
func TestRunDue(t *testing.T) {
	a, b := newProbe(t, time.Minute), newProbe(t, time.Hour)
	g := NewGroup(a.svc, b.svc)
	var mu sync.Mutex
	run := func() []string {
		mu.Lock()
		defer mu.Unlock()
		ran, err := g.RunDue(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return ran
	}
	if ran := run(); len(ran) != 2 {
		t.Fatalf("first RunDue ran %v, want both", ran)
	}
	a.clock.Advance(time.Minute) // a and b have their own clocks
	if ran := run(); len(ran) != 1 {
		t.Fatalf("RunDue after a's interval ran %v, want a only", ran)
	}
	if ran := run(); len(ran) != 0 {
		t.Fatalf("RunDue again ran %v, want none", ran)
	}
}
