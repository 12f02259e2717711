package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's Prometheus instruments, registered on the server's
// private registry.
type metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	errors       *prometheus.CounterVec
	claimWaiters prometheus.Gauge
	claimed      prometheus.Counter
	claimSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_api_requests_total",
			Help: "API requests by route pattern and HTTP status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drover_api_request_duration_seconds",
			Help:    "API request latency by route pattern (long-poll claims include their wait).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_api_errors_total",
			Help: "API error answers by error code.",
		}, []string{"code"}),
		claimWaiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drover_api_claim_waiters",
			Help: "Long-poll claims currently waiting for work.",
		}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_api_tasks_claimed_total",
			Help: "Tasks handed to workers through the claim endpoint.",
		}),
		claimSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drover_claim_duration_seconds",
			Help:    "Latency of one batched claim in the store (the waiters served by one ClaimMany call), without the long-poll wait.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.errors, m.claimWaiters, m.claimed, m.claimSeconds)
	return m
}

// statusRecorder captures the status code written by a handler.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument counts and times every request by its route pattern and
// turns a handler panic into a 500.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.logger.ErrorContext(r.Context(), "api handler panic", "route", r.Pattern, "panic", v)
				if rec.status == 0 {
					writeJSON(rec, http.StatusInternalServerError, map[string]any{"error": map[string]string{"code": "internal", "message": "internal error"}})
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
			s.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(rec, r)
	})
}
