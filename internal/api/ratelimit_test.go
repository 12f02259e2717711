package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/google/uuid"
)

// A token over its budget gets 429 with Retry-After and nothing happens;
// the operator budget and the worker budget are separate, so a runaway
// operator client does not starve heartbeats; the budget refills with time
// (the injected clock); health checks are never limited.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock := core.NewFakeClock(storetest.Base)
	s, err := New(Config{Store: st, Queue: queue.New(st, clock, queue.Config{}, nil), Clock: clock,
		OperatorToken: "op", RateLimits: RateLimits{APIRate: 1, APIBurst: 3, WorkerRate: 1, WorkerBurst: 2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	do := func(method, path, token, body string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec
	}
	for i := range 3 {
		if rec := do(http.MethodGet, "/v1/tasks", "op", ""); rec.Code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i, rec.Code, rec.Body)
		}
	}
	rec := do(http.MethodPost, "/v1/tasks", "op", `{"type":"a"}`)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), "rate_limited") {
		t.Fatalf("over the burst: %d Retry-After %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if n, err := st.TaskList(t.Context(), &store.TaskListParams{}); err != nil || len(n) != 0 {
		t.Fatalf("a refused submit wrote %d tasks (%v)", len(n), err)
	}
	if rec := do(http.MethodGet, "/healthz", "op", ""); rec.Code != http.StatusOK {
		t.Fatalf("healthz limited: %d", rec.Code)
	}
	// The same token on a worker route has its own budget: heartbeats get
	// through (here 401/404 from the handler, not 429).
	w := uuid.New()
	for i := range 2 {
		if rec := do(http.MethodPost, "/v1/workers/"+w.String()+"/heartbeat", "op", `{}`); rec.Code == http.StatusTooManyRequests {
			t.Fatalf("worker request %d refused by the operator budget", i)
		}
	}
	if rec := do(http.MethodPost, "/v1/workers/"+w.String()+"/heartbeat", "op", `{}`); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("worker budget not enforced: %d", rec.Code)
	}
	// Another token is not affected.
	if rec := do(http.MethodGet, "/v1/tasks", "other", ""); rec.Code == http.StatusTooManyRequests {
		t.Fatal("another token shares the operator's budget")
	}
	// The budget refills at the configured rate.
	clock.Advance(time.Second)
	if rec := do(http.MethodGet, "/v1/tasks", "op", ""); rec.Code != http.StatusOK {
		t.Fatalf("after a second: %d", rec.Code)
	}
}

func TestWorkerRoute(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         bool
	}{
		{"POST", "/v1/workers/x/heartbeat", true},
		{"POST", "/v1/workers/x/claim", true},
		{"POST", "/v1/workers/x/drain", false},
		{"POST", "/v1/tasks/x/progress", true},
		{"POST", "/v1/tasks/x/cancel", false},
		{"POST", "/v1/tasks", false},
		{"PUT", "/v1/blobs/abc", true},
		{"GET", "/v1/workers", false},
	} {
		if got := workerRoute(c.method, c.path); got != c.want {
			t.Errorf("workerRoute(%s %s) = %v, want %v", c.method, c.path, got, c.want)
		}
	}
}
