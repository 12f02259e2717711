package api

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/time/rate"

	"github.com/droverhq/drover/internal/core"
)

// RateLimits bounds the requests of each bearer token (requests without one
// count per client address). Worker routes (register, heartbeat, claim,
// logs, complete, fail, progress, output uploads) have their own budget per
// token, so a runaway operator or owner client cannot starve agents'
// heartbeats. A rate ≤ 0 means unlimited. /metrics, /healthz, /readyz and
// the dashboard's pages are not limited.
type RateLimits struct {
	// APIRate and APIBurst: requests per second and burst of each operator
	// or owner token on the other /v1 routes.
	APIRate  float64
	APIBurst int
	// WorkerRate and WorkerBurst: the same for each token on worker routes.
	WorkerRate  float64
	WorkerBurst int
}

// maxLimiterKeys bounds the limiter table; past it the table starts over
// (a flood of made-up tokens cannot grow memory without bound).
const maxLimiterKeys = 50000

type rateLimiter struct {
	cfg  RateLimits
	mu   sync.Mutex
	keys map[string]*rate.Limiter
}

func newRateLimiter(cfg RateLimits) *rateLimiter {
	return &rateLimiter{cfg: cfg, keys: map[string]*rate.Limiter{}}
}

// workerRoute reports whether path is one of the worker protocol's routes.
func workerRoute(method, path string) bool {
	if method == http.MethodPut && strings.HasPrefix(path, "/v1/blobs/") || method == http.MethodPost && path == "/v1/blobs" {
		return true
	}
	if method != http.MethodPost {
		return false
	}
	rest, ok := strings.CutPrefix(path, "/v1/workers/")
	if ok {
		_, action, _ := strings.Cut(rest, "/")
		switch action {
		case "register", "heartbeat", "claim", "logs", "complete":
			return true
		}
		return false
	}
	if rest, ok := strings.CutPrefix(path, "/v1/tasks/"); ok {
		_, action, _ := strings.Cut(rest, "/")
		switch action {
		case "complete", "fail", "progress", "outputs/uploads", "outputs/multipart":
			return true
		}
	}
	return false
}

// rateLimit answers 429 with Retry-After to a token over its budget.
func (s *Server) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			next.ServeHTTP(w, r)
			return
		}
		worker := workerRoute(r.Method, r.URL.Path)
		lim, burst := s.limiter.cfg.APIRate, s.limiter.cfg.APIBurst
		class := "api:"
		if worker {
			lim, burst, class = s.limiter.cfg.WorkerRate, s.limiter.cfg.WorkerBurst, "worker:"
		}
		if lim <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		key := class + clientKey(r)
		l := s.limiter.get(key, lim, burst)
		res := l.ReserveN(s.clock.Now(), 1)
		if !res.OK() {
			s.tooMany(w, r, 1, class)
			return
		}
		if d := res.DelayFrom(s.clock.Now()); d > 0 {
			res.CancelAt(s.clock.Now())
			s.tooMany(w, r, int(math.Ceil(d.Seconds())), class)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) tooMany(w http.ResponseWriter, r *http.Request, retryAfter int, class string) {
	retryAfter = max(retryAfter, 1)
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	budget := "operator/owner"
	if class == "worker:" {
		budget = "worker"
	}
	s.writeError(w, r, core.Errorf(core.ERATELIMITED,
		"too many requests for this token's %s budget; retry after %d s", budget, retryAfter))
}

// clientKey names the caller: its token's hash, else its address.
func clientKey(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok && tok != "" {
		return "tok:" + HashToken(tok)
	}
	if tok, ok := strings.CutPrefix(h, "bearer "); ok && tok != "" {
		return "tok:" + HashToken(tok)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

func (l *rateLimiter) get(key string, lim float64, burst int) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rl, ok := l.keys[key]; ok {
		return rl
	}
	if len(l.keys) >= maxLimiterKeys {
		l.keys = map[string]*rate.Limiter{}
	}
	rl := rate.NewLimiter(rate.Limit(lim), max(burst, 1))
	l.keys[key] = rl
	return rl
}
