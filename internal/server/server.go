// Package server builds a whole Drover server from a *config.Config — the
// store, the queue, the providers, the orchestrator and the HTTP API — and
// runs it. `drover serve`, `drover demo` and the end-to-end tests share it,
// so there is exactly one wiring.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/api"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/orchestrator"
	"github.com/droverhq/drover/internal/outputsvc"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/local"
	"github.com/droverhq/drover/internal/provider/runpod"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/status"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/dbopen"
	"github.com/droverhq/drover/internal/webhook"
	"github.com/prometheus/client_golang/prometheus"
)

// Options adjust what New builds.
type Options struct {
	// Listener, when set, is used instead of listening on cfg.Listen (the
	// demo and tests pass a listener on 127.0.0.1:0).
	Listener net.Listener
	// Providers adds or replaces providers by name. A "local" provider is
	// built from the config when a pool needs it and none is given.
	Providers map[string]provider.Provider
	// LocalExecutable is the drover binary local agents run (default:
	// this process's executable).
	LocalExecutable string
	// LocalKillGrace is the local provider's SIGTERM→SIGKILL grace.
	LocalKillGrace time.Duration
	// Clock defaults to core.SystemClock.
	Clock  core.Clock
	Logger *slog.Logger
}

// Server is a built server. Run serves it; the fields are for callers that
// need to look inside (the demo and the tests).
type Server struct {
	Config       *config.Config
	Store        store.Store
	Queue        *queue.Service
	API          *api.Server
	Orchestrator *orchestrator.Orchestrator
	Providers    map[string]provider.Provider
	// Local is the local provider, when one was built.
	Local *local.Provider
	// Outputs stores and verifies task outputs.
	Outputs *outputsvc.Service
	// Signals carries wake-ups between replicas (PostgreSQL only).
	Signals store.SignalBus
	// Webhooks sends completion webhooks; nil when no secret is available.
	Webhooks *webhook.Dispatcher

	ln     net.Listener
	certs  *certReloader // nil without TLS
	http   *http.Server
	log    *slog.Logger
	closed sync.Once
}

// New opens (and migrates) the database and builds every component. On
// error everything opened so far is closed.
func New(ctx context.Context, cfg *config.Config, opt Options) (_ *Server, err error) {
	if opt.Clock == nil {
		opt.Clock = core.SystemClock{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	log := opt.Logger
	st, err := dbopen.Open(ctx, cfg.Database, true)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	s := &Server{Config: cfg, Store: st, log: log, Providers: map[string]provider.Provider{}}
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	s.Queue = queue.New(st, opt.Clock, QueueConfig(cfg), log.With("component", "queue"))
	if s.Signals, err = WireSignals(st, s.Queue, log.With("component", "signals")); err != nil {
		return nil, err
	}

	for name, p := range opt.Providers {
		s.Providers[name] = p
	}
	if _, ok := s.Providers[local.Name]; !ok && usesProvider(cfg, local.Name) {
		lp, err := NewLocalProvider(cfg, opt.LocalExecutable, opt.LocalKillGrace, opt.Clock, log)
		if err != nil {
			return nil, err
		}
		s.Providers[local.Name] = lp
	}
	if lp, ok := s.Providers[local.Name].(*local.Provider); ok {
		s.Local = lp
	}
	if _, ok := s.Providers[runpod.Name]; !ok && usesProvider(cfg, runpod.Name) {
		rp, err := NewRunPodProvider(ctx, cfg, opt.Clock, log)
		if err != nil {
			return nil, err
		}
		s.Providers[runpod.Name] = rp
	}

	if s.Outputs, err = NewOutputs(ctx, cfg, st, s.Queue, opt.Clock, log.With("component", "outputs")); err != nil {
		return nil, err
	}
	if s.Webhooks, err = NewWebhooks(cfg, st, opt.Clock, log.With("component", "webhooks")); err != nil {
		// Deliveries wait in the outbox until a server with a secret runs.
		log.Warn("completion webhooks disabled", "err", err)
		err = nil
	}

	reg := prometheus.NewRegistry()
	// The control loop calls providers through the instrumented wrapper:
	// calls, errors by kind and latency on /metrics (docs/metrics.md).
	counted := make(map[string]provider.Provider, len(s.Providers))
	for name, p := range s.Providers {
		counted[name] = provider.Instrument(p, reg, log.With("component", "provider"))
	}
	s.Orchestrator, err = orchestrator.New(orchestrator.Deps{
		Store: st, Queue: s.Queue, Providers: counted, Clock: opt.Clock, Config: cfg,
		Logger: log.With("component", "orchestrator"), Registerer: reg,
		// Expired outputs are swept by the leader's maintenance.
		SweepOutputs: s.Outputs.Sweep,
	})
	if err != nil {
		return nil, fmt.Errorf("build orchestrator: %w", err)
	}
	surface := &Surface{Store: st, Config: cfg, Clock: opt.Clock, Orchestrator: s.Orchestrator}
	dash, err := newDashboard(cfg, st, opt.Clock, log.With("component", "dashboard"), surface)
	if err != nil {
		return nil, fmt.Errorf("build dashboard: %w", err)
	}
	s.API, err = api.New(api.Config{
		Store: st, Queue: s.Queue, Clock: opt.Clock, Logger: log.With("component", "api"), Registry: reg,
		OperatorToken:     cfg.Auth.OperatorToken,
		RateLimits:        apiRateLimits(cfg),
		OwnerTokens:       cfg.Auth.OwnerTokens,
		HeartbeatInterval: cfg.HeartbeatInterval.D(),
		HeartbeatTimeout:  cfg.HeartbeatTimeout.D(),
		ServerLostTimeout: cfg.EffectiveServerLostTimeout(),
		PoolConcurrency: func(pool string) int {
			if pc := cfg.Pools[pool]; pc != nil {
				return pc.Concurrency
			}
			return 1
		},
		Status: func(ctx context.Context) (any, error) {
			return status.Build(ctx, st, cfg, opt.Clock.Now())
		},
		Surface: surface,
		Wake:    s.Orchestrator.Wake,

		Dashboard: dash,
		Outputs:   s.Outputs,
	})
	if err != nil {
		return nil, fmt.Errorf("build api: %w", err)
	}
	s.ln = opt.Listener
	if s.ln == nil {
		s.ln, err = net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
	}
	s.http = &http.Server{Handler: s.API.Handler(), ReadHeaderTimeout: 10 * time.Second}
	if cfg.TLS.Enabled() {
		if s.certs, err = newCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, opt.Clock.Now); err != nil {
			return nil, err
		}
		s.ln = tls.NewListener(s.ln, s.certs.tlsConfig())
	}
	return s, nil
}

// QueueConfig maps drover.yaml onto the queue's rules.
func QueueConfig(cfg *config.Config) queue.Config {
	tt := map[string]time.Duration{}
	for k, v := range cfg.Tasks.TypeTimeouts {
		tt[k] = v.D()
	}
	return queue.Config{
		MaxAttempts:       cfg.Tasks.MaxAttempts,
		MaxLost:           cfg.Tasks.MaxLost,
		DefaultTimeout:    cfg.Tasks.Timeout.D(),
		TypeTimeouts:      tt,
		StallTimeouts:     cfg.StallTimeouts(),
		TypePools:         cfg.Tasks.TypePools,
		Pools:             slices.Sorted(maps.Keys(cfg.Pools)),
		QueueTTL:          cfg.Tasks.QueueTTL.D(),
		OwnerLimit:        cfg.Tasks.OwnerLimit,
		MaxQueuedPerOwner: cfg.Tasks.MaxQueuedPerOwner,
		LeaseDuration:     cfg.HeartbeatTimeout.D(),
		// Grants a live agent does not report are released after this.
		UnreportedGrace: queue.UnreportedGrace(cfg.HeartbeatInterval.D(), cfg.HeartbeatTimeout.D()),
		BackoffBase:     cfg.Tasks.BackoffBase.D(),
		BackoffMax:      cfg.Tasks.BackoffMax.D(),
		OwnerCallbacks:  cfg.Tasks.Callbacks,
		RequiresGPU: func(pool string) bool {
			pc := cfg.Pools[pool]
			return pc != nil && pc.GPURequired()
		},
	}
}

// NewLocalProvider builds the local provider for cfg: state and agent logs
// in providers.local.dir (default: "drover-agents" next to a SQLite
// database, else in the working directory), one entry per local pool.
func NewLocalProvider(cfg *config.Config, exe string, grace time.Duration, clock core.Clock, log *slog.Logger) (*local.Provider, error) {
	dir := cfg.EffectiveLocalDir()
	pools := map[string]local.Pool{}
	for name, pc := range cfg.Pools {
		if pc != nil && pc.Provider == local.Name {
			pools[name] = local.Pool{Exec: pc.Exec, Env: pc.Env}
		}
	}
	p, err := local.New(local.Options{
		Dir: dir, Executable: exe, Pools: pools, GPUs: cfg.Providers.Local.GPUs, Cluster: cfg.ClusterName(),
		KillGrace: grace, Clock: clock, Logger: log.With("component", "provider"),
	})
	if err != nil {
		return nil, fmt.Errorf("build local provider: %w", err)
	}
	return p, nil
}

func usesProvider(cfg *config.Config, name string) bool {
	for _, pc := range cfg.Pools {
		if pc != nil && pc.Provider == name {
			return true
		}
	}
	return false
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns http://<listen address> (https:// with TLS).
func (s *Server) URL() string {
	if s.certs != nil {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// ReloadTLS reads the TLS certificate and key again (on SIGHUP); without
// TLS it does nothing.
func (s *Server) ReloadTLS() error {
	if s.certs == nil {
		return nil
	}
	return s.certs.Reload()
}

// Run serves the API and runs the control loop until ctx is cancelled,
// then shuts down: long polls are released, in-flight requests get up to
// 10 s, the tick in progress finishes, heartbeats are flushed and the
// database is closed. Agents of the local provider keep running (a
// restarted server adopts them).
func (s *Server) Run(ctx context.Context) error {
	s.Queue.Start(context.WithoutCancel(ctx))
	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(ctx))
	loopDone := make(chan error, 1)
	go func() { loopDone <- s.Orchestrator.Run(loopCtx) }()
	if s.Webhooks != nil {
		go s.Webhooks.Run(loopCtx, time.Second, nil)
	}
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.http.Serve(s.ln) }()
	s.log.Info("drover server running", "url", s.URL())

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-httpDone:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("serve http: %w", err)
		}
		httpDone <- nil
	case err := <-loopDone:
		runErr = fmt.Errorf("control loop: %w", err)
		loopDone <- nil
	}
	shCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.API.Close()
	if err := s.http.Shutdown(shCtx); err != nil {
		s.log.Warn("http shutdown", "err", err)
	}
	<-httpDone
	stopLoop()
	<-loopDone
	s.close()
	return runErr
}

func (s *Server) close() {
	s.closed.Do(func() {
		if s.Signals != nil {
			s.Queue.SetRelay(nil)
			s.Signals.Close()
		}
		if s.Queue != nil {
			s.Queue.Stop()
		}
		if s.Store != nil {
			if err := s.Store.Close(); err != nil {
				s.log.Warn("close store", "err", err)
			}
		}
		if s.ln != nil {
			_ = s.ln.Close()
		}
	})
}

// ReadOrCreateToken returns the operator token stored in path, creating a
// random one (mode 0600) if the file does not exist. The token is never
// logged.
func ReadOrCreateToken(path string) (string, error) {
	tok, err := ReadToken(path)
	if err != nil || tok != "" {
		return tok, err
	}
	if tok, err = RandomToken(); err != nil {
		return "", err
	}
	return tok, WriteToken(path, tok)
}

// ReadToken returns the operator token stored in path, or "" when the file
// does not exist or is empty.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read operator token: %w", err)
	}
	return string(trimSpace(b)), nil
}

// WriteToken stores tok in path (mode 0600).
func WriteToken(path, tok string) error {
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("write operator token: %w", err)
	}
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// RandomToken returns a new random token (32 bytes, hex).
func RandomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
