package dashboard

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/status"
)

// overviewWorkerRows bounds the worker table of the overview: workers that
// need attention first, the rest on the workers page.
const overviewWorkerRows = 50

// overviewData is the overview page.
type overviewData struct {
	R *status.Report
	// VerdictClass is the verdict as a CSS class (spaces → dashes).
	VerdictClass string
	Workers      []status.WorkerRow
	MoreWorkers  int
	States       []stateCount
	Range        string
	Charts       []chart
}

type stateCount struct {
	State string
	N     int
}

// workerStateOrder is the order of the "workers by state" line.
var workerStateOrder = []string{"ready", "booting", "provisioning", "requested", "draining", "terminating", "failed"}

func (h *Handler) handleOverview(r *http.Request, v *view) (string, error) {
	q := newQuery(r.URL.Query(), "range")
	rng := q.oneOf("range", "1h", "1h", "24h")
	if q.err != nil {
		return "", q.err
	}
	ctx := r.Context()
	now := h.clock.Now()
	rep, err := status.Build(ctx, h.st, h.cfg.Fleet, now)
	if err != nil {
		return "", fmt.Errorf("build status: %w", err)
	}
	d := &overviewData{R: rep, VerdictClass: strings.ReplaceAll(rep.Verdict, " ", "-"), Range: rng}
	for _, st := range workerStateOrder {
		if n := rep.Workers.ByState[st]; n > 0 {
			d.States = append(d.States, stateCount{st, n})
		}
	}
	rows := slices.Clone(rep.WorkerTable)
	slices.SortStableFunc(rows, func(a, b status.WorkerRow) int { return healthRank(a.Health) - healthRank(b.Health) })
	d.MoreWorkers = rep.WorkerTableOmitted
	if len(rows) > overviewWorkerRows {
		d.MoreWorkers += len(rows) - overviewWorkerRows
		rows = rows[:overviewWorkerRows]
	}
	d.Workers = rows
	from := now.Add(-chartRanges[rng])
	series, err := status.Series(ctx, h.st, from, now)
	if err != nil {
		return "", fmt.Errorf("read samples: %w", err)
	}
	d.Charts = buildCharts(series.Points, from, now)
	v.Title, v.Nav, v.Data = "Overview", "overview", d
	return "overview", nil
}

// healthRank puts the workers that need attention first.
func healthRank(h string) int {
	switch {
	case strings.HasPrefix(h, status.HealthStale):
		return 0
	case strings.HasPrefix(h, status.HealthFailed):
		return 1
	case strings.HasPrefix(h, status.HealthInitializing):
		return 2
	case strings.HasPrefix(h, status.HealthDraining), strings.HasPrefix(h, status.HealthTerminating):
		return 3
	}
	return 4
}

// breakersData is the breakers page.
type breakersData struct {
	Breakers []status.Breaker
}

func (h *Handler) handleBreakers(r *http.Request, v *view) (string, error) {
	if q := newQuery(r.URL.Query()); q.err != nil {
		return "", q.err
	}
	bs, err := status.Breakers(r.Context(), h.st, h.cfg.Fleet, h.clock.Now())
	if err != nil {
		return "", fmt.Errorf("list breakers: %w", err)
	}
	v.Title, v.Nav, v.Data = "Breakers", "breakers", &breakersData{Breakers: bs}
	return "breakers", nil
}

// maxReasonLen bounds the reason an operator gives when opening a breaker.
const maxReasonLen = 200

func (h *Handler) handleBreakerReset(w http.ResponseWriter, r *http.Request) {
	h.breakerAction(w, r, "reset", func(key string) error {
		_, err := h.cfg.Breakers.BreakerSet(r.Context(), key, "reset", "")
		return err
	})
}

func (h *Handler) handleBreakerOpen(w http.ResponseWriter, r *http.Request) {
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if len(reason) > maxReasonLen {
		h.renderError(w, r, http.StatusBadRequest, fmt.Sprintf("reason is %d bytes long; the limit is %d", len(reason), maxReasonLen))
		return
	}
	if reason == "" {
		reason = "opened by an operator from the dashboard"
	}
	h.breakerAction(w, r, "open", func(key string) error {
		_, err := h.cfg.Breakers.BreakerSet(r.Context(), key, "open", reason)
		return err
	})
}

// breakerAction runs a breaker change for the form's key and goes back to
// the breakers page.
func (h *Handler) breakerAction(w http.ResponseWriter, r *http.Request, verb string, do func(key string) error) {
	if h.cfg.Breakers == nil {
		h.renderError(w, r, http.StatusNotFound, "breaker actions are not available on this server")
		return
	}
	key := r.PostForm.Get("key")
	if key == "" || len(key) > 300 {
		h.renderError(w, r, http.StatusBadRequest, "key: want a breaker key pool/gpu/region of at most 300 bytes")
		return
	}
	if err := do(key); err != nil {
		var ce *core.Error
		if errors.As(err, &ce) {
			switch ce.Code {
			case core.ENOTFOUND:
				h.renderError(w, r, http.StatusNotFound, ce.Message)
				return
			case core.EINVALID:
				h.renderError(w, r, http.StatusBadRequest, ce.Error())
				return
			}
		}
		h.log.ErrorContext(r.Context(), "dashboard breaker action failed", slog.String("action", verb), slog.String("key", key), slog.Any("err", err))
		h.renderError(w, r, http.StatusInternalServerError, "the breaker could not be changed; the server log has the details")
		return
	}
	h.log.InfoContext(r.Context(), "breaker changed from the dashboard", slog.String("action", verb), slog.String("key", key))
	http.Redirect(w, r, "/breakers", http.StatusSeeOther)
}

// fmtSeconds renders a duration given in seconds.
func fmtSeconds(s float64) string { return fmtAge(time.Duration(s * float64(time.Second))) }
