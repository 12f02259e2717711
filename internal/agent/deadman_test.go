package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// goneServer is the fake server that can go away for good: once down,
// every call fails as a refused connection would.
type goneServer struct {
	*fakeServer
	down    atomic.Bool
	lostS   float64
	refused atomic.Int64
}

var errRefused = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

func (g *goneServer) fail() bool {
	if g.down.Load() {
		g.refused.Add(1)
		return true
	}
	return false
}

func (g *goneServer) Register(ctx context.Context, id uuid.UUID, req *wire.RegisterRequest) (*wire.RegisterResponse, error) {
	if g.fail() {
		return nil, errRefused
	}
	r, err := g.fakeServer.Register(ctx, id, req)
	if r != nil {
		r.ServerLostTimeoutS = g.lostS
	}
	return r, err
}

func (g *goneServer) Heartbeat(ctx context.Context, id uuid.UUID, req *wire.HeartbeatRequest) (*wire.HeartbeatResponse, error) {
	if g.fail() {
		return nil, errRefused
	}
	return g.fakeServer.Heartbeat(ctx, id, req)
}

func (g *goneServer) Claim(ctx context.Context, id uuid.UUID, max int, wait time.Duration) ([]wire.ClaimedTask, error) {
	if g.fail() {
		return nil, errRefused
	}
	t, err := g.fakeServer.Claim(ctx, id, max, wait)
	if g.fail() {
		// The server went away during the long poll.
		return nil, errRefused
	}
	return t, err
}

func (g *goneServer) Complete(ctx context.Context, w uuid.UUID, l wire.Lease, r json.RawMessage) error {
	if g.fail() {
		return errRefused
	}
	return g.fakeServer.Complete(ctx, w, l, r)
}

func (g *goneServer) Fail(ctx context.Context, w uuid.UUID, l wire.Lease, msg string, retryable bool) (*wire.Task, error) {
	if g.fail() {
		return nil, errRefused
	}
	return g.fakeServer.Fail(ctx, w, l, msg, retryable)
}

func (g *goneServer) Logs(ctx context.Context, id uuid.UUID, lines []wire.LogLineIn) error {
	if g.fail() {
		return errRefused
	}
	return g.fakeServer.Logs(ctx, id, lines)
}

func deadManAgent(t *testing.T, g *goneServer, clock core.Clock, lost time.Duration) (*Agent, <-chan error) {
	t.Helper()
	a := New(g, Options{
		WorkerID:          uuid.New(),
		Runner:            &Runner{Command: handlerScript, KillGrace: 2 * time.Second, TempDir: t.TempDir()},
		GPU:               NoGPUs{},
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Clock:             clock,
		RetryMin:          time.Millisecond,
		RetryMax:          5 * time.Millisecond,
		ServerLostTimeout: lost,
		ServerLostCheck:   5 * time.Millisecond,
	})
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	go func() { done <- a.Run(ctx) }()
	return a, done
}

// A server that goes away for good: after server_lost_timeout (here from
// the register reply) without any answer, the agent kills its running
// handler, reports nothing and Run returns ErrServerLost. While the server
// answers, time passing does not trip the switch.
func TestAgentDeadMansSwitch(t *testing.T) {
	g := &goneServer{fakeServer: newFakeServer(), lostS: 30}
	clock := core.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a, done := deadManAgent(t, g, clock, 0)
	blocked := task("echo", `{"block":true}`)
	g.claims <- blocked
	deadline := time.Now().Add(20 * time.Second)
	for a.Running() == 0 || !g.sawLease(blocked.Lease()) {
		if time.Now().After(deadline) {
			t.Fatal("the task never ran")
		}
		<-g.beat
	}
	// 29 s pass in steps while the server answers: still working.
	for range 29 {
		clock.Advance(time.Second)
		<-g.beat
	}
	select {
	case err := <-done:
		t.Fatalf("agent gave up while the server answered: %v", err)
	default:
	}
	g.down.Store(true)
	// Wait for a refused call after the switch, so that the last answer
	// is older than what follows.
	for g.refused.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no call reached the gone server")
		}
		time.Sleep(time.Millisecond)
	}
	clock.Advance(29 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("agent gave up before server_lost_timeout: %v", err)
	default:
	}
	clock.Advance(2 * time.Second)
	select {
	case err := <-done:
		if !errors.Is(err, ErrServerLost) {
			t.Fatalf("Run = %v, want ErrServerLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the agent outlived its server")
	}
	if a.Running() != 0 {
		t.Fatalf("%d handlers still running", a.Running())
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.completed) != 0 || len(g.failed) != 0 {
		t.Fatalf("the agent reported %v / %v after losing the server", g.completed, g.failed)
	}
}

// A server that never answers the registration trips the switch too, with
// the --server-lost-timeout given to the agent.
func TestAgentDeadMansSwitchBeforeRegistration(t *testing.T) {
	g := &goneServer{fakeServer: newFakeServer()}
	g.down.Store(true)
	clock := core.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	_, done := deadManAgent(t, g, clock, 10*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for g.refused.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent never tried to register")
		}
		time.Sleep(time.Millisecond)
	}
	clock.Advance(11 * time.Second)
	select {
	case err := <-done:
		if !errors.Is(err, ErrServerLost) {
			t.Fatalf("Run = %v, want ErrServerLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the agent kept retrying a server that never answered")
	}
}

func TestServerLostTimeoutChoice(t *testing.T) {
	a := New(newFakeServer(), Options{ServerLostTimeout: 7 * time.Second})
	if got := a.serverLostTimeout(&wire.RegisterResponse{ServerLostTimeoutS: 60}); got != 7*time.Second {
		t.Errorf("flag: %s", got)
	}
	a = New(newFakeServer(), Options{})
	for _, c := range []struct {
		reg  *wire.RegisterResponse
		want time.Duration
	}{
		{&wire.RegisterResponse{ServerLostTimeoutS: 60, HeartbeatTimeout: wire.Duration(time.Second)}, time.Minute},
		{&wire.RegisterResponse{HeartbeatTimeout: wire.Duration(25 * time.Second)}, 100 * time.Second},
		{nil, DefaultServerLostTimeout},
	} {
		if got := a.serverLostTimeout(c.reg); got != c.want {
			t.Errorf("serverLostTimeout(%+v) = %s, want %s", c.reg, got, c.want)
		}
	}
}
