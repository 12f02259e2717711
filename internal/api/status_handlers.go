package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/status"
)

// Surface is the operator's read models and breaker actions (why,
// breakers, chart series) that are built outside the API; package server
// implements it over the store, the config and the orchestrator. The
// routes of this file answer 503 while Config.Surface is nil.
type Surface interface {
	// Why explains a task, worker or pool (status.Why).
	Why(ctx context.Context, kind status.WhyKind, id string) (*status.WhyReport, error)
	// Breakers lists every breaker with its numbers.
	Breakers(ctx context.Context) ([]status.Breaker, error)
	// BreakerSet resets or opens one breaker and returns it after.
	BreakerSet(ctx context.Context, key, action, reason string) (*status.Breaker, error)
	// Series returns the sampled fleet between since and until.
	Series(ctx context.Context, since, until time.Time) (*status.SeriesReport, error)
}

// BreakerSetRequest is the body of POST /v1/breakers/{action}.
type BreakerSetRequest struct {
	Key    string `json:"key"`
	Reason string `json:"reason,omitempty"`
}

// BreakerList is the answer of GET /v1/breakers.
type BreakerList struct {
	Breakers []status.Breaker `json:"breakers"`
}

// maxSeriesWindow bounds GET /v1/series.
const maxSeriesWindow = 8 * 24 * time.Hour

func (s *Server) surface(w http.ResponseWriter, r *http.Request, what string) (Surface, bool) {
	if !s.operator(w, r, what) {
		return nil, false
	}
	if s.cfg.Surface == nil {
		s.writeError(w, r, core.Errorf(core.EUNAVAILABLE, "%s is not available on this server", what))
		return nil, false
	}
	return s.cfg.Surface, true
}

func (s *Server) handleWhy(w http.ResponseWriter, r *http.Request) {
	sf, ok := s.surface(w, r, "explain a task, worker or pool")
	if !ok {
		return
	}
	rep, err := sf.Why(r.Context(), status.WhyKind(r.PathValue("kind")), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) handleBreakerList(w http.ResponseWriter, r *http.Request) {
	sf, ok := s.surface(w, r, "list breakers")
	if !ok {
		return
	}
	bs, err := sf.Breakers(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list breakers: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, BreakerList{Breakers: bs})
}

func (s *Server) handleBreakerSet(w http.ResponseWriter, r *http.Request) {
	sf, ok := s.surface(w, r, "change a breaker")
	if !ok {
		return
	}
	var req BreakerSetRequest
	if err := decodeJSON(r.Body, 16<<10, &req, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Key == "" {
		s.writeError(w, r, core.Invalid("key", "is required (drover breaker list shows the keys)"))
		return
	}
	b, err := sf.BreakerSet(r.Context(), req.Key, r.PathValue("action"), req.Reason)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// handleSeries answers GET /v1/series?window=1h (or since/until as RFC
// 3339 times): the fleet's samples for charts.
func (s *Server) handleSeries(w http.ResponseWriter, r *http.Request) {
	sf, ok := s.surface(w, r, "read the fleet's time series")
	if !ok {
		return
	}
	now := s.clock.Now()
	until, err := queryTime(r, "until")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if until.IsZero() {
		until = now
	}
	since, err := queryTime(r, "since")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if v := r.URL.Query().Get("window"); v != "" {
		d, perr := time.ParseDuration(v)
		if perr != nil || d <= 0 || d > maxSeriesWindow {
			s.writeError(w, r, core.Invalid("window", "want a duration between 1s and %s such as 1h or 24h, got %q", maxSeriesWindow, truncate(v, 32)))
			return
		}
		since = until.Add(-d)
	}
	if since.IsZero() {
		since = until.Add(-time.Hour)
	}
	if !since.Before(until) || until.Sub(since) > maxSeriesWindow {
		s.writeError(w, r, core.Invalid("since", "must be before until and at most %s earlier", maxSeriesWindow))
		return
	}
	rep, err := sf.Series(r.Context(), since, until)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("read series: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
