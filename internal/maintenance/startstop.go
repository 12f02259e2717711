package maintenance

import (
	"context"
	"sync"
)

// Runner is the one start/stop contract of the leader's maintenance: a
// Service and a Group both implement it.
//
//   - Start launches the work in the background and returns; the work
//     runs until Stop or until ctx ends. Starting a runner that runs
//     already does nothing (and returns nil).
//   - Stop ends the work and returns once it has ended: a pass in progress
//     sees its context cancelled and Stop waits for it to return. Stopping
//     a runner that is not running does nothing.
//   - After Stop the runner may be started again (leadership lost, then
//     won back): each Start begins a new run with fresh signals.
//   - Started is closed once the current run has begun; Stopped once it has
//     ended. Both belong to the run in progress, or to the next one when
//     none runs (a runner never started reports Stopped closed).
type Runner interface {
	Start(ctx context.Context) error
	Stop()
	Started() <-chan struct{}
	Stopped() <-chan struct{}
}

// lifecycle implements Runner's bookkeeping for one background function.
// Stop holds mu until the run has ended, so a Start racing a Stop begins
// after it.
type lifecycle struct {
	mu      sync.Mutex
	running bool
	cancel  context.CancelFunc
	started chan struct{}
	stopped chan struct{}
}

func closed() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// start runs setup(runCtx) (when not nil) in the caller's goroutine, then
// fn(runCtx) in a new one, unless a run is in progress. Started is closed
// after setup. fn returning (ctx cancelled, or nothing left to do) ends
// the run.
func (l *lifecycle) start(ctx context.Context, setup, fn func(ctx context.Context)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running {
		select {
		case <-l.stopped:
			// The last run ended by itself (its context ended): a new one
			// may begin.
		default:
			return
		}
	}
	if l.started == nil || isClosed(l.started) {
		l.started = make(chan struct{})
	}
	l.stopped = make(chan struct{})
	l.running = true
	runCtx, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	if setup != nil {
		setup(runCtx)
	}
	close(l.started)
	stopped := l.stopped
	go func() {
		defer close(stopped)
		defer cancel()
		fn(runCtx)
	}()
}

// stop cancels the run in progress and waits for it to end.
func (l *lifecycle) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.running {
		return
	}
	l.cancel()
	<-l.stopped
	l.running = false
}

// Started returns the channel closed once the current (or next) run began.
func (l *lifecycle) Started() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started == nil || (!l.running && isClosed(l.started)) {
		l.started = make(chan struct{})
	}
	return l.started
}

// Stopped returns the channel closed once the current run ended; closed at
// once when none runs.
func (l *lifecycle) Stopped() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped == nil {
		l.stopped = closed()
	}
	return l.stopped
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
