package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/droverhq/drover/internal/store/storetest"
)

// Operator drain and terminate do not write worker state: they record a
// request for the orchestrator, wake it and answer 202 with the worker as
// it is; a state the action does not apply to answers 409 and records
// nothing.
func TestWorkerActionRecordsRequest(t *testing.T) {
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
	var woke []string
	s, err := New(Config{Store: st, Queue: queue.New(st, clock, queue.Config{}, nil), Clock: clock,
		OperatorToken: "op", Wake: func(r string) { woke = append(woke, r) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	post := func(path string) int {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"reason":"maintenance"}`))
		req.Header.Set("Authorization", "Bearer op")
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code
	}

	ready := storetest.InsertWorker(t, st, core.DefaultPool, core.WorkerReady)
	if code := post("/v1/workers/" + ready.ID.String() + "/drain"); code != http.StatusAccepted {
		t.Fatalf("drain ready worker: status %d, want 202", code)
	}
	if got := storetest.GetWorker(t, st, ready.ID).State; got != core.WorkerReady {
		t.Fatalf("the API wrote worker state %s", got)
	}
	reqs, err := st.WorkerRequestList(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 || reqs[0].WorkerID != ready.ID || reqs[0].Action != store.WorkerActionDrain || reqs[0].Reason != "operator: maintenance" {
		t.Fatalf("requests %+v, want one drain for %s", reqs, ready.ID)
	}
	if len(woke) != 1 || woke[0] != "operator drain" {
		t.Fatalf("wake calls %v", woke)
	}

	gone := storetest.InsertWorker(t, st, core.DefaultPool, core.WorkerTerminating)
	if code := post("/v1/workers/" + gone.ID.String() + "/drain"); code != http.StatusConflict {
		t.Fatalf("drain terminating worker: status %d, want 409", code)
	}
	if reqs, _ := st.WorkerRequestList(t.Context()); len(reqs) != 1 {
		t.Fatalf("a refused action recorded a request: %+v", reqs)
	}
}
