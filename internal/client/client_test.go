package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api"
	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/google/uuid"
)

// setup starts a real API server over a SQLite store and returns an
// operator client, a worker client and the worker's id.
func setup(t *testing.T) (srv *httptest.Server, op, wc *client.Client, workerID uuid.UUID) {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	clock := core.NewFakeClock(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	q := queue.New(st, clock, queue.Config{}, slog.New(slog.DiscardHandler))
	a, err := api.New(api.Config{Store: st, Queue: q, Clock: clock, Logger: slog.New(slog.DiscardHandler), OperatorToken: "op"})
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(a.Handler())
	t.Cleanup(func() { a.Close(); srv.Close(); _ = st.Close() })
	workerID = uuid.Must(uuid.NewV7())
	now := clock.Now()
	if err := st.WorkerInsert(ctx, &core.Worker{ID: workerID, Pool: "default", Provider: "sim", State: core.WorkerReady,
		TokenHash: api.HashToken("wtok"), Concurrency: 1, CreatedAt: now, StateChangedAt: now}); err != nil {
		t.Fatal(err)
	}
	op, err = client.New(srv.URL, "op")
	if err != nil {
		t.Fatal(err)
	}
	wc, err = client.New(srv.URL+"/", "wtok", client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return srv, op, wc, workerID
}

func TestLeaseLostIsClassified(t *testing.T) {
	_, op, wc, wid := setup(t)
	ctx := t.Context()
	if _, err := op.Submit(ctx, &wire.SubmitRequest{Type: "x"}); err != nil {
		t.Fatal(err)
	}
	tasks, err := wc.Claim(ctx, wid, 1, 0)
	if err != nil || len(tasks) != 1 {
		t.Fatalf("claim: %v %v", tasks, err)
	}
	if err := wc.Complete(ctx, wid, tasks[0].Lease(), json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	err = wc.Complete(ctx, wid, tasks[0].Lease(), nil)
	if !client.IsLeaseLost(err) || client.IsRetryable(err) || client.StatusOf(err) != 409 || client.CodeOf(err) != wire.CodeConflict {
		t.Fatalf("stale complete: %v (lease lost %v, retryable %v)", err, client.IsLeaseLost(err), client.IsRetryable(err))
	}
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Op != "complete task" {
		t.Fatalf("error %v does not say what was being done", err)
	}
}

func TestClaimLongPollTimesOutEmpty(t *testing.T) {
	_, _, wc, wid := setup(t)
	tasks, err := wc.Claim(t.Context(), wid, 1, 50*time.Millisecond)
	if err != nil || len(tasks) != 0 {
		t.Fatalf("empty long poll: %v %v", tasks, err)
	}
}

func TestInvalidFieldIsReported(t *testing.T) {
	_, op, _, _ := setup(t)
	_, err := op.Submit(t.Context(), &wire.SubmitRequest{Type: "x", Priority: new(5000)})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 400 || ce.Field != "priority" || client.IsRetryable(err) {
		t.Fatalf("err = %#v", err)
	}
}

func TestTransportAndProxyErrorsAreRetryable(t *testing.T) {
	srv, op, _, _ := setup(t)
	srv.Close()
	_, err := op.Tasks(t.Context(), wire.TaskFilter{})
	if err == nil || !client.IsRetryable(err) || client.CodeOf(err) != "" || client.IsLeaseLost(err) {
		t.Fatalf("closed server: %v", err)
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}))
	defer proxy.Close()
	c, err := client.New(proxy.URL, "t")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Heartbeat(t.Context(), uuid.New(), &wire.HeartbeatRequest{})
	if !client.IsRetryable(err) || client.CodeOf(err) != wire.CodeUnavailable || client.StatusOf(err) != 502 {
		t.Fatalf("proxy 502: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Task(ctx, uuid.New()); client.IsRetryable(err) {
		t.Fatalf("a cancelled call is not retryable: %v", err)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://"} {
		if _, err := client.New(u, "t"); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}
