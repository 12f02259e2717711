package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
)

func TestStatusForCode(t *testing.T) {
	for code, want := range map[string]int{
		core.EINVALID: 400, core.ENOTFOUND: 404, core.ECONFLICT: 409, core.EUNAUTHORIZED: 401,
		core.EFORBIDDEN: 403, core.ETOOLARGE: 413, core.EUNAVAILABLE: 503, core.EINTERNAL: 500, "bogus": 500,
	} {
		if got := StatusForCode(code); got != want {
			t.Errorf("StatusForCode(%q) = %d, want %d", code, got, want)
		}
	}
}

func TestWriteErrorHidesInternalDetail(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{logger: slog.New(slog.NewTextHandler(&logs, nil)), metrics: newMetrics(prometheus.NewRegistry())}
	cases := []struct {
		err    error
		status int
		code   string
		body   string
	}{
		{fmt.Errorf("claim tasks: %w", errors.New("read tcp 10.0.0.5:5432: connection reset by peer")), 500, "internal", "internal error"},
		{fmt.Errorf("complete task: %w", core.ErrLeaseLost), 409, "conflict", "lease lost"},
		{core.Invalid("priority", "must be between -1000 and 1000"), 400, "invalid", "must be between"},
		{fmt.Errorf("get task: %w", core.ErrNotFound), 404, "not_found", "not found"},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		s.writeError(rec, httptest.NewRequest("GET", "/v1/tasks", nil), tc.err)
		var eb wire.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
			t.Fatal(err)
		}
		if rec.Code != tc.status || eb.Error.Code != tc.code || !strings.Contains(eb.Error.Message, tc.body) {
			t.Errorf("%v: got %d %+v", tc.err, rec.Code, eb.Error)
		}
		if strings.Contains(rec.Body.String(), "connection reset by peer") {
			t.Errorf("internal detail leaked to the caller: %s", rec.Body.String())
		}
	}
	if !strings.Contains(logs.String(), "connection reset by peer") {
		t.Error("the internal error's detail should be in the server log")
	}
}

// A full owner queue is a 429 with Retry-After, naming the owner.
func TestWriteErrorOwnerQueueFull(t *testing.T) {
	s := &Server{logger: slog.New(slog.DiscardHandler), metrics: newMetrics(prometheus.NewRegistry())}
	rec := httptest.NewRecorder()
	err := fmt.Errorf("submit: %w", &queue.OwnerQueueFullError{Owner: "alice", Cap: 10, Queued: 9, Adding: 2})
	s.writeError(rec, httptest.NewRequest("POST", "/v1/tasks", nil), err)
	var eb wire.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 429 || eb.Error.Code != "owner_queue_full" || eb.Error.Field != "owner" || !strings.Contains(eb.Error.Message, `owner "alice" has 9 queued tasks`) {
		t.Fatalf("got %d %+v", rec.Code, eb.Error)
	}
	if got := rec.Header().Get("Retry-After"); got != "30" {
		t.Fatalf("Retry-After = %q, want 30", got)
	}
}
