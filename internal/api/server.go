// Package api is Drover's HTTP server: the worker protocol (register,
// heartbeat, long-poll claim, complete/fail/progress, logs), the operator
// API (tasks, workers, events, logs, status), /metrics, /healthz and
// /readyz. Routes live under /v1 on one http.ServeMux with method patterns.
//
// Errors are answered as {"error":{"code","message","field"}} by one
// function (writeError) that maps core error codes to HTTP statuses. Bodies
// are size-limited and decoded strictly (unknown fields are rejected); a
// rejected request changes nothing. See docs/api.md.
package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/outputsvc"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Queue is the part of queue.Service the API uses.
type Queue interface {
	Submit(ctx context.Context, reqs []queue.SubmitRequest) ([]store.TaskInsertResult, error)
	Get(ctx context.Context, id uuid.UUID) (*core.Task, error)
	List(ctx context.Context, params *store.TaskListParams) ([]*core.Task, error)
	Cancel(ctx context.Context, id uuid.UUID) (*core.Task, error)
	Retry(ctx context.Context, id uuid.UUID) (*core.Task, error)
	Register(ctx context.Context, workerID uuid.UUID, info queue.RegisterInfo) (*core.Worker, error)
	Heartbeat(ctx context.Context, workerID uuid.UUID, hb queue.HeartbeatInfo) (queue.HeartbeatReply, error)
	Claim(ctx context.Context, workerID uuid.UUID, max int) ([]*core.Task, error)
	ClaimMany(ctx context.Context, reqs []queue.ClaimRequest) ([][]*core.Task, error)
	ClaimCompleteMany(ctx context.Context, reqs []queue.ClaimRequest) ([][]core.Lease, [][]*core.Task, error)
	Release(ctx context.Context, workerID uuid.UUID, leases []core.Lease) (int, error)
	Complete(ctx context.Context, workerID uuid.UUID, lease core.Lease, result json.RawMessage) error
	CompleteMany(ctx context.Context, workerID uuid.UUID, items []store.TaskCompletion) ([]core.Lease, error)
	Fail(ctx context.Context, workerID uuid.UUID, lease core.Lease, msg string, retryable bool) (*core.Task, error)
	Progress(ctx context.Context, workerID uuid.UUID, lease core.Lease, progress *float64, msg string) error
	Logs(ctx context.Context, workerID uuid.UUID, lines []*core.LogLine) error
	Notify() <-chan struct{}
}

var _ Queue = (*queue.Service)(nil)

// Config wires a Server.
type Config struct {
	Store store.Store
	Queue Queue
	Clock core.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the API's metrics and is served on /metrics; a new
	// private registry when nil.
	Registry *prometheus.Registry
	// OperatorToken grants the full API. Empty disables operator access.
	OperatorToken string
	// OwnerTokens maps an owner token to its owner: such a token may submit
	// tasks (as that owner) and read or cancel that owner's tasks.
	OwnerTokens map[string]string
	// HeartbeatInterval and HeartbeatTimeout are sent to registering agents
	// (defaults 5s and 25s).
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// LeaseDuration is sent to agents (default HeartbeatTimeout).
	LeaseDuration time.Duration
	// ServerLostTimeout is sent to agents: their dead man's switch
	// (default 4 × HeartbeatTimeout).
	ServerLostTimeout time.Duration
	// PoolConcurrency returns the per-worker concurrency of a pool (1 when
	// nil or ≤ 0).
	PoolConcurrency func(pool string) int
	// Status builds the fleet status report of GET /v1/status; the endpoint
	// answers 503 when nil.
	Status func(ctx context.Context) (any, error)
	// Surface serves why, breakers and chart series (status_handlers.go);
	// those routes answer 503 when nil.
	Surface Surface
	// Wake, when set, is called after an operator action on a worker so the
	// control loop acts at once.
	Wake func(reason string)
	// Dashboard, when set, serves every path outside the API's routes (the
	// web dashboard at /).
	Dashboard http.Handler
	// ClaimPoll is how often waiting claims re-check for work that became
	// claimable without a notification (backoff elapsed, an owner slot
	// freed). Default 1s.
	ClaimPoll time.Duration
	// Outputs serves task outputs (uploads, verification, reads); the
	// output routes answer 404 when nil.
	Outputs *outputsvc.Service
	// RateLimits bounds the request rate of each token (ratelimit.go);
	// zero rates mean unlimited.
	RateLimits RateLimits
}

// Server serves the API. Create it with New, serve Handler, and call Close
// (after http.Server.Shutdown, or before it to release long polls first).
type Server struct {
	store   store.Store
	queue   Queue
	clock   core.Clock
	logger  *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics
	cfg     Config

	operatorHash []byte
	ownerTokens  map[string]string // sha256 hex → owner
	workers      *workerCache

	claims  *queue.ClaimDispatcher
	handler http.Handler
	limiter *rateLimiter

	closeOnce sync.Once
	stopping  chan struct{}
	cancel    context.CancelFunc
	done      chan struct{}
}

// New builds a Server and starts its claim dispatcher.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Queue == nil {
		return nil, errors.New("api: Store and Queue are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = core.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = core.DefaultLeaseDuration
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = cfg.HeartbeatTimeout
	}
	if cfg.ServerLostTimeout <= 0 {
		cfg.ServerLostTimeout = 4 * cfg.HeartbeatTimeout
	}
	if cfg.ClaimPoll <= 0 {
		cfg.ClaimPoll = time.Second
	}
	s := &Server{
		store:       cfg.Store,
		queue:       cfg.Queue,
		clock:       cfg.Clock,
		logger:      cfg.Logger,
		reg:         cfg.Registry,
		cfg:         cfg,
		ownerTokens: map[string]string{},
		workers:     newWorkerCache(),
		stopping:    make(chan struct{}),
		done:        make(chan struct{}),
	}
	s.metrics = newMetrics(cfg.Registry)
	if cfg.OperatorToken != "" {
		sum := sha256.Sum256([]byte(cfg.OperatorToken))
		s.operatorHash = sum[:]
	}
	for tok, owner := range cfg.OwnerTokens {
		if tok != "" && owner != "" {
			s.ownerTokens[HashToken(tok)] = owner
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.claims = queue.NewClaimDispatcher(cfg.Queue, cfg.ClaimPoll, s.metrics.claimWaiters, s.logger)
	s.claims.ObserveLatency(s.metrics.claimSeconds)
	go func() {
		defer close(s.done)
		s.claims.Run(ctx)
	}()
	s.limiter = newRateLimiter(cfg.RateLimits)
	s.handler = s.instrument(s.rateLimit(s.routes()))
	return s, nil
}

// Handler returns the HTTP handler of every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the registry served on /metrics, so other components
// (the orchestrator, the queue) can register their metrics on it.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Close answers every waiting long-poll claim with no tasks, stops the
// claim dispatcher and waits for it. Leases stay valid.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.stopping)
		s.cancel()
		<-s.done
	})
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// Worker protocol.
	mux.HandleFunc("POST /v1/workers/{id}/register", s.handleWorkerRegister)
	mux.HandleFunc("POST /v1/workers/{id}/heartbeat", s.handleWorkerHeartbeat)
	mux.HandleFunc("POST /v1/workers/{id}/claim", s.handleTaskClaim)
	mux.HandleFunc("POST /v1/workers/{id}/logs", s.handleWorkerLogs)
	mux.HandleFunc("POST /v1/workers/{id}/complete", s.handleTaskCompleteBatch)
	mux.HandleFunc("POST /v1/tasks/{id}/complete", s.handleTaskComplete)
	mux.HandleFunc("POST /v1/tasks/{id}/fail", s.handleTaskFail)
	mux.HandleFunc("POST /v1/tasks/{id}/progress", s.handleTaskProgress)
	// Operator API.
	mux.HandleFunc("POST /v1/tasks", s.handleTaskSubmit)
	mux.HandleFunc("POST /v1/tasks/batch", s.handleTaskSubmitBatch)
	mux.HandleFunc("GET /v1/tasks/{id}", s.handleTaskGet)
	mux.HandleFunc("GET /v1/tasks", s.handleTaskList)
	mux.HandleFunc("POST /v1/tasks/{id}/cancel", s.handleTaskCancel)
	mux.HandleFunc("POST /v1/tasks/{id}/retry", s.handleTaskRetry)
	mux.HandleFunc("GET /v1/workers", s.handleWorkerList)
	mux.HandleFunc("POST /v1/workers/{id}/drain", s.handleWorkerDrain)
	mux.HandleFunc("POST /v1/workers/{id}/terminate", s.handleWorkerTerminate)
	mux.HandleFunc("GET /v1/events", s.handleEventList)
	mux.HandleFunc("GET /v1/logs", s.handleLogList)
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("GET /v1/why/{kind}/{id}", s.handleWhy)
	mux.HandleFunc("GET /v1/breakers", s.handleBreakerList)
	mux.HandleFunc("POST /v1/breakers/{action}", s.handleBreakerSet)
	mux.HandleFunc("GET /v1/series", s.handleSeries)
	s.outputRoutes(mux)
	// Operations.
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	if s.cfg.Dashboard != nil {
		mux.Handle("/", s.cfg.Dashboard)
	}
	// Everything else under /v1 answers a JSON 404.
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, core.Errorf(core.ENOTFOUND, "no route %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz answers 200 when the database is reachable and migrated
// (reading the kv table proves both) and the server is not shutting down.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.stopping:
		s.writeError(w, r, core.Errorf(core.EUNAVAILABLE, "shutting down"))
		return
	default:
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.logger.WarnContext(ctx, "readiness check failed", slog.String("error", err.Error()))
		s.writeError(w, r, core.Errorf(core.EUNAVAILABLE, "database not reachable or not migrated"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "backend": s.store.Backend()})
}
