package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/google/uuid"
)

// ServerLostFactor times the server's heartbeat_timeout is the default
// server_lost_timeout when neither the flag nor the register reply sets it.
const ServerLostFactor = 4

// DefaultServerLostTimeout bounds the wait for a server that never answers
// before the agent has registered (and so before it knows the server's
// heartbeat_timeout): 4 × the default heartbeat_timeout of 25 s.
const DefaultServerLostTimeout = 100 * time.Second

// ErrServerLost is what Run returns when no call reached the server for
// server_lost_timeout: the agent killed its handlers, reported nothing and
// gave up, so that the machine it runs on can stop billing.
var ErrServerLost = errors.New("server lost")

// deadMan is the agent's dead man's switch: it remembers when the server
// last answered and says when it has been silent for too long.
type deadMan struct {
	mu      sync.Mutex
	last    time.Time
	timeout time.Duration
}

// alive records that the server answered at now.
func (d *deadMan) alive(now time.Time) {
	d.mu.Lock()
	if now.After(d.last) {
		d.last = now
	}
	d.mu.Unlock()
}

func (d *deadMan) setTimeout(t time.Duration) {
	d.mu.Lock()
	d.timeout = t
	d.mu.Unlock()
}

// silent returns how long the server has been silent at now, and whether
// that is over the timeout.
func (d *deadMan) silent(now time.Time) (time.Duration, time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := now.Sub(d.last)
	return s, d.timeout, d.timeout > 0 && s >= d.timeout
}

// answered reports whether err still proves the server is there: no error,
// or a 4xx answer (a 5xx may come from a proxy in front of a dead server).
func answered(err error) bool {
	if err == nil {
		return true
	}
	s := client.StatusOf(err)
	return s >= http.StatusBadRequest && s < http.StatusInternalServerError
}

// watchedAPI records every answer of the server in the dead man's switch.
type watchedAPI struct {
	API
	a *Agent
}

func (w watchedAPI) note(err error) error {
	if answered(err) {
		w.a.dead.alive(w.a.opt.Clock.Now())
	}
	return err
}

func (w watchedAPI) Register(ctx context.Context, id uuid.UUID, req *wire.RegisterRequest) (*wire.RegisterResponse, error) {
	r, err := w.API.Register(ctx, id, req)
	return r, w.note(err)
}

func (w watchedAPI) Heartbeat(ctx context.Context, id uuid.UUID, req *wire.HeartbeatRequest) (*wire.HeartbeatResponse, error) {
	r, err := w.API.Heartbeat(ctx, id, req)
	return r, w.note(err)
}

func (w watchedAPI) Claim(ctx context.Context, id uuid.UUID, max int, wait time.Duration) ([]wire.ClaimedTask, error) {
	t, err := w.API.Claim(ctx, id, max, wait)
	return t, w.note(err)
}

func (w watchedAPI) Complete(ctx context.Context, workerID uuid.UUID, lease wire.Lease, result json.RawMessage) error {
	return w.note(w.API.Complete(ctx, workerID, lease, result))
}

func (w watchedAPI) Fail(ctx context.Context, workerID uuid.UUID, lease wire.Lease, msg string, retryable bool) (*wire.Task, error) {
	t, err := w.API.Fail(ctx, workerID, lease, msg, retryable)
	return t, w.note(err)
}

func (w watchedAPI) Logs(ctx context.Context, id uuid.UUID, lines []wire.LogLineIn) error {
	return w.note(w.API.Logs(ctx, id, lines))
}

// serverLostTimeout picks the limit once registered: the flag, else the
// server's server_lost_timeout_s, else ServerLostFactor × its
// heartbeat_timeout, else DefaultServerLostTimeout.
func (a *Agent) serverLostTimeout(reg *wire.RegisterResponse) time.Duration {
	switch {
	case a.opt.ServerLostTimeout > 0:
		return a.opt.ServerLostTimeout
	case reg != nil && reg.ServerLostTimeoutS > 0:
		return time.Duration(reg.ServerLostTimeoutS * float64(time.Second))
	case reg != nil && reg.HeartbeatTimeout > 0:
		return ServerLostFactor * reg.HeartbeatTimeout.D()
	}
	return DefaultServerLostTimeout
}

// watch checks the dead man's switch every ServerLostCheck until ctx ends.
// When the server has been silent for the timeout it logs why, marks the
// agent as having lost its server, stops it (handlers are killed and
// nothing is reported) and calls giveUp.
func (a *Agent) watch(ctx context.Context, giveUp func()) {
	t := time.NewTicker(a.opt.ServerLostCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		silent, limit, lost := a.dead.silent(a.opt.Clock.Now())
		if !lost {
			continue
		}
		a.log.Error("no answer from the server for server_lost_timeout: killing handlers and exiting",
			"silent", silent.String(), "server_lost_timeout", limit.String())
		a.mu.Lock()
		a.serverLost = true
		a.mu.Unlock()
		a.Stop("server lost")
		giveUp()
		return
	}
}

func (a *Agent) isServerLost() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.serverLost
}
