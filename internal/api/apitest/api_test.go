package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api"
	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/google/uuid"
)

const (
	opToken    = "op-secret-token"
	ownerToken = "alice-secret-token"
)

type testBundle struct {
	st    store.Store
	q     *queue.Service
	api   *api.Server
	srv   *httptest.Server
	clock *core.FakeClock
	op    *client.Client
	owner *client.Client
}

type testWorker struct {
	id    uuid.UUID
	token string
	c     *client.Client
}

func setup(t *testing.T) *testBundle { return setupWith(t, nil, nil) }

// setupWith is setup with the queue wrapped by wrap and the HTTP handler by
// mw (either may be nil).
func setupWith(t *testing.T, wrap func(*queue.Service) api.Queue, mw func(http.Handler) http.Handler) *testBundle {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return setupOn(t, st, wrap, mw)
}

// setupOn is setupWith on a migrated store st, which it closes.
func setupOn(t *testing.T, st store.Store, wrap func(*queue.Service) api.Queue, mw func(http.Handler) http.Handler) *testBundle {
	t.Helper()
	clock := core.NewFakeClock(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	logger := slog.New(slog.DiscardHandler)
	q := queue.New(st, clock, queue.Config{OwnerLimit: 0}, logger)
	qctx, cancel := context.WithCancel(context.Background())
	q.Start(qctx)
	var aq api.Queue = q
	if wrap != nil {
		aq = wrap(q)
	}
	srv, err := api.New(api.Config{
		Store: st, Queue: aq, Clock: clock, Logger: logger,
		OperatorToken: opToken,
		OwnerTokens:   map[string]string{ownerToken: "alice"},
		Status: func(context.Context) (any, error) {
			return map[string]string{"verdict": "HEALTHY"}, nil
		},
	})
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	h := srv.Handler()
	if mw != nil {
		h = mw(h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		q.Stop()
		cancel()
		_ = st.Close()
	})
	b := &testBundle{st: st, q: q, api: srv, srv: hs, clock: clock}
	b.op = mustClient(t, hs.URL, opToken)
	b.owner = mustClient(t, hs.URL, ownerToken)
	return b
}

func mustClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	c, err := client.New(url, token)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	return c
}

// addWorker inserts a worker row in state ready with a fresh token.
func (b *testBundle) addWorker(t *testing.T, pool string) *testWorker {
	t.Helper()
	id := uuid.Must(uuid.NewV7())
	tok := "worker-token-" + id.String()
	now := b.clock.Now()
	err := b.st.WorkerInsert(t.Context(), &core.Worker{
		ID: id, Pool: pool, Provider: "sim", Placement: pool + "/gpu/r", State: core.WorkerReady,
		TokenHash: api.HashToken(tok), Concurrency: 1, CreatedAt: now, StateChangedAt: now, ReadyAt: &now,
	})
	if err != nil {
		t.Fatalf("insert worker: %v", err)
	}
	return &testWorker{id: id, token: tok, c: mustClient(t, b.srv.URL, tok)}
}

func (b *testBundle) submit(t *testing.T, typ string) *core.Task {
	t.Helper()
	res, err := b.op.Submit(t.Context(), &wire.SubmitRequest{Type: typ, Params: json.RawMessage(`{"n":1}`)})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return res.Task
}

func (b *testBundle) claimOne(t *testing.T, w *testWorker) wire.ClaimedTask {
	t.Helper()
	tasks, err := w.c.Claim(t.Context(), w.id, 1, 0)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if len(tasks) != 1 {
		t.Fatalf("claim: got %d tasks, want 1", len(tasks))
	}
	return tasks[0]
}

// raw sends a request and returns the status and decoded error body.
func (b *testBundle) raw(t *testing.T, method, path, token string, body []byte) (int, wire.ErrorDetail) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, b.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var eb wire.ErrorBody
	if resp.StatusCode >= 300 {
		if err := json.Unmarshal(data, &eb); err != nil {
			t.Fatalf("%s %s: status %d with a non-JSON error body %q", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, eb.Error
}

func (b *testBundle) taskCount(t *testing.T) int {
	t.Helper()
	n, err := b.st.TaskCountByState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range n {
		total += c
	}
	return total
}

func TestWorkerHappyPath(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	w := b.addWorker(t, "default")

	reg, err := w.c.Register(ctx, w.id, &wire.RegisterRequest{InstanceID: "i-1", AgentVersion: "test", GPUs: []wire.GPU{{Index: 0, Name: "RTX 4090", MemoryMiB: 24564}}})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if reg.Pool != "default" || reg.Concurrency != 1 || reg.HeartbeatInterval.D() != 5*time.Second || reg.LeaseDuration.D() <= 0 {
		t.Fatalf("register reply = %+v", reg)
	}
	// The agents' dead man's switch: 4 × heartbeat_timeout by default, in
	// seconds per the JSON convention.
	if reg.ServerLostTimeoutS != 4*reg.HeartbeatTimeout.D().Seconds() {
		t.Fatalf("register reply server_lost_timeout_s = %v, heartbeat_timeout %s", reg.ServerLostTimeoutS, reg.HeartbeatTimeout.D())
	}

	task := b.submit(t, "render")
	if task.State != core.TaskQueued || task.Owner != core.DefaultOwner {
		t.Fatalf("submitted task = %+v", task)
	}
	ct := b.claimOne(t, w)
	if ct.ID != task.ID || ct.LeaseToken == uuid.Nil || ct.Attempt != 1 || string(ct.Params) != `{"n":1}` {
		t.Fatalf("claimed = %+v", ct)
	}

	hb, err := w.c.Heartbeat(ctx, w.id, &wire.HeartbeatRequest{
		Leases:   []wire.Lease{ct.Lease()},
		Metrics:  json.RawMessage(`{"gpu_util":93}`),
		Progress: []wire.TaskProgress{{TaskID: ct.ID, LeaseToken: ct.LeaseToken, Progress: new(0.5), Message: "half"}},
	})
	if err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if hb.Drain || hb.Stop || len(hb.LostLeases) != 0 {
		t.Fatalf("heartbeat reply = %+v", hb)
	}
	if err := w.c.Progress(ctx, w.id, ct.Lease(), new(0.75), "three quarters"); err != nil {
		t.Fatalf("progress: %v", err)
	}
	got, err := b.op.Task(ctx, ct.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Progress == nil || *got.Progress != 0.75 || got.ProgressMsg != "three quarters" {
		t.Fatalf("progress not recorded: %+v", got)
	}
	if err := w.c.Logs(ctx, w.id, []wire.LogLineIn{{TaskID: ct.ID.String(), Stream: "stdout", Line: "hello"}, {Stream: "agent", Line: "started"}}); err != nil {
		t.Fatalf("logs: %v", err)
	}
	if err := w.c.Complete(ctx, w.id, ct.Lease(), json.RawMessage(`{"url":"s3://x"}`)); err != nil {
		t.Fatalf("complete: %v", err)
	}
	got, err = b.op.Task(ctx, ct.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != core.TaskSucceeded || string(got.Result) != `{"url":"s3://x"}` {
		t.Fatalf("after complete: %+v", got)
	}
	lines, err := b.op.LogLines(ctx, wire.LogFilter{TaskID: ct.ID.String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || lines[0].Line != "hello" || lines[0].WorkerID != w.id.String() {
		t.Fatalf("task logs = %+v", lines)
	}
	// Completing again is a stale lease: 409, nothing changes.
	err = w.c.Complete(ctx, w.id, ct.Lease(), json.RawMessage(`{"url":"other"}`))
	if !client.IsLeaseLost(err) || client.CodeOf(err) != wire.CodeConflict {
		t.Fatalf("second complete: err = %v, want a 409 conflict", err)
	}
	got, _ = b.op.Task(ctx, ct.ID)
	if string(got.Result) != `{"url":"s3://x"}` {
		t.Fatalf("second complete changed the result: %s", got.Result)
	}
	// The worker token may read the task it held.
	if _, err := w.c.Task(ctx, ct.ID); err != nil {
		t.Fatalf("worker reads its task: %v", err)
	}
}

func TestFailRetryableAndFinal(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	w := b.addWorker(t, "default")
	res, err := b.op.Submit(ctx, &wire.SubmitRequest{Type: "x", MaxAttempts: new(2)})
	if err != nil {
		t.Fatal(err)
	}
	ct := b.claimOne(t, w)
	after, err := w.c.Fail(ctx, w.id, ct.Lease(), "CUDA out of memory", true)
	if err != nil {
		t.Fatalf("fail: %v", err)
	}
	if after.State != core.TaskQueued || after.Failures != 1 {
		t.Fatalf("after retryable fail: %+v", after)
	}
	b.clock.Advance(time.Hour) // past the backoff
	ct = b.claimOne(t, w)
	after, err = w.c.Fail(ctx, w.id, ct.Lease(), "again", true)
	if err != nil {
		t.Fatalf("fail: %v", err)
	}
	if after.State != core.TaskFailed || after.ID != res.Task.ID {
		t.Fatalf("after attempts exhausted: %+v", after)
	}
	// Retry by the operator puts it back.
	rt, err := b.op.Retry(ctx, after.ID)
	if err != nil || rt.State != core.TaskQueued {
		t.Fatalf("retry: %+v, %v", rt, err)
	}
	cn, err := b.op.Cancel(ctx, after.ID)
	if err != nil || cn.State != core.TaskCancelled {
		t.Fatalf("cancel: %+v, %v", cn, err)
	}
	_, err = b.op.Cancel(ctx, after.ID)
	if client.StatusOf(err) != http.StatusConflict {
		t.Fatalf("cancel twice: %v, want 409", err)
	}
}

func TestLongPollClaimWakesOnSubmit(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	w := b.addWorker(t, "default")
	type result struct {
		tasks []wire.ClaimedTask
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		tasks, err := w.c.Claim(ctx, w.id, 1, 20*time.Second)
		ch <- result{tasks, err}
	}()
	// Wait until the claim is parked, then submit: the claim must return
	// the new task long before its 20 s wait.
	waitFor(t, func() bool { return metricValue(t, b, "drover_api_claim_waiters") == 1 })
	task := b.submit(t, "render")
	select {
	case r := <-ch:
		if r.err != nil || len(r.tasks) != 1 || r.tasks[0].ID != task.ID {
			t.Fatalf("long poll: %+v, %v", r.tasks, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long-poll claim did not wake on submit")
	}
}

func TestLongPollReleasedOnClose(t *testing.T) {
	b := setup(t)
	w := b.addWorker(t, "default")
	ch := make(chan error, 1)
	go func() {
		tasks, err := w.c.Claim(t.Context(), w.id, 1, 30*time.Second)
		if err == nil && len(tasks) != 0 {
			err = errors.New("unexpected tasks")
		}
		ch <- err
	}()
	waitFor(t, func() bool { return metricValue(t, b, "drover_api_claim_waiters") == 1 })
	b.api.Close()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("claim after close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release the long poll")
	}
}

// waitFor polls cond, yielding the processor, for at most 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		runtime.Gosched()
	}
}

func metricValue(t *testing.T, b *testBundle, name string) float64 {
	t.Helper()
	mfs, err := b.api.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestBadInput(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	w := b.addWorker(t, "default")
	other := b.addWorker(t, "default")
	// Verify the other worker's token once so the server knows it.
	if _, err := other.c.Heartbeat(ctx, other.id, &wire.HeartbeatRequest{}); err != nil {
		t.Fatal(err)
	}
	b.submit(t, "a")
	ct := b.claimOne(t, w)
	before := b.taskCount(t)

	big := []byte(`{"type":"x","params":{"p":"` + strings.Repeat("a", wire.MaxSubmitBody) + `"}}`)
	bigBatch := []byte(`{"tasks":[{"type":"ok"},{"type":"x","params":{"p":"` + strings.Repeat("a", 2<<20) + `"}}]}`)
	complete := func(token string) []byte {
		b, _ := json.Marshal(wire.CompleteRequest{WorkerID: w.id, LeaseToken: uuid.MustParse(token)})
		return b
	}
	wPath := "/v1/workers/" + w.id.String()
	cases := []struct {
		name, method, path, token string
		body                      []byte
		status                    int
		code, field               string
	}{
		{"SubmitTooLarge", "POST", "/v1/tasks", opToken, big, 413, "too_large", "body"},
		{"UnknownField", "POST", "/v1/tasks", opToken, []byte(`{"type":"x","priorty":3}`), 400, "invalid", "priorty"},
		{"WrongType", "POST", "/v1/tasks", opToken, []byte(`{"type":"x","priority":"high"}`), 400, "invalid", "priority"},
		{"Malformed", "POST", "/v1/tasks", opToken, []byte(`{"type":`), 400, "invalid", "body"},
		{"Trailing", "POST", "/v1/tasks", opToken, []byte(`{"type":"x"} {"type":"y"}`), 400, "invalid", "body"},
		{"EmptyBody", "POST", "/v1/tasks", opToken, nil, 400, "invalid", "body"},
		{"BadDuration", "POST", "/v1/tasks", opToken, []byte(`{"type":"x","timeout":"soon"}`), 400, "invalid", "timeout"},
		{"QueueValidation", "POST", "/v1/tasks", opToken, []byte(`{"type":"x","priority":100000}`), 400, "invalid", "priority"},
		{"BatchItemInvalid", "POST", "/v1/tasks/batch", opToken, []byte(`{"tasks":[{"type":"ok"},{"type":"x","max_attempts":0}]}`), 400, "invalid", "tasks[1].max_attempts"},
		{"BatchEmpty", "POST", "/v1/tasks/batch", opToken, []byte(`{"tasks":[]}`), 400, "invalid", "tasks"},
		{"BatchParamsTooLarge", "POST", "/v1/tasks/batch", opToken, bigBatch, 413, "too_large", "tasks[1].params"},
		{"NoToken", "POST", "/v1/tasks", "", []byte(`{"type":"x"}`), 401, "unauthorized", ""},
		{"WrongToken", "GET", "/v1/tasks", "nope", nil, 401, "unauthorized", ""},
		{"WrongWorkerToken", "POST", wPath + "/heartbeat", "nope", []byte(`{}`), 401, "unauthorized", ""},
		{"OtherWorkersToken", "POST", wPath + "/heartbeat", other.token, []byte(`{}`), 403, "forbidden", ""},
		{"WorkerOnOperatorRoute", "GET", "/v1/workers", other.token, nil, 403, "forbidden", ""},
		{"WorkerSubmits", "POST", "/v1/tasks", other.token, []byte(`{"type":"x"}`), 403, "forbidden", ""},
		{"OtherWorkerCompletes", "POST", "/v1/tasks/" + ct.ID.String() + "/complete", other.token, complete(ct.LeaseToken.String()), 403, "forbidden", ""},
		{"OtherWorkerReadsTask", "GET", "/v1/tasks/" + ct.ID.String(), other.token, nil, 403, "forbidden", ""},
		{"OwnerOtherOwner", "POST", "/v1/tasks", ownerToken, []byte(`{"type":"x","owner":"bob"}`), 403, "forbidden", "owner"},
		{"OwnerListsWorkers", "GET", "/v1/workers", ownerToken, nil, 403, "forbidden", ""},
		{"OwnerReadsOthersTask", "GET", "/v1/tasks/" + ct.ID.String(), ownerToken, nil, 403, "forbidden", ""},
		{"StaleLease", "POST", "/v1/tasks/" + ct.ID.String() + "/complete", w.token, complete(uuid.NewString()), 409, "conflict", ""},
		{"MissingLease", "POST", "/v1/tasks/" + ct.ID.String() + "/complete", w.token, []byte(`{"worker_id":"` + w.id.String() + `"}`), 400, "invalid", "lease_token"},
		{"LeaseTokenNotUUID", "POST", "/v1/tasks/" + ct.ID.String() + "/complete", w.token, []byte(`{"worker_id":"` + w.id.String() + `","lease_token":"abc"}`), 400, "invalid", "lease_token"},
		{"FailLeaseTokenNotUUID", "POST", "/v1/tasks/" + ct.ID.String() + "/fail", w.token, []byte(`{"worker_id":"` + w.id.String() + `","lease_token":"12345","error":"x"}`), 400, "invalid", "lease_token"},
		{"HeartbeatLeaseNotUUID", "POST", wPath + "/heartbeat", w.token, []byte(`{"leases":[{"task_id":"` + ct.ID.String() + `","lease_token":"` + ct.LeaseToken.String() + `"},{"task_id":"x","lease_token":"` + ct.LeaseToken.String() + `"}]}`), 400, "invalid", "leases[1].task_id"},
		{"ResultNotObject", "POST", "/v1/tasks/" + ct.ID.String() + "/complete", w.token, []byte(`{"worker_id":"` + w.id.String() + `","lease_token":"` + ct.LeaseToken.String() + `","result":[1]}`), 400, "invalid", "result"},
		{"BadTaskID", "GET", "/v1/tasks/not-a-uuid", opToken, nil, 400, "invalid", "id"},
		{"UnknownTask", "GET", "/v1/tasks/" + uuid.NewString(), opToken, nil, 404, "not_found", ""},
		{"BadState", "GET", "/v1/tasks?state=done", opToken, nil, 400, "invalid", "state"},
		{"BadLimit", "GET", "/v1/tasks?limit=0", opToken, nil, 400, "invalid", "limit"},
		{"ClaimWaitTooLong", "POST", wPath + "/claim?wait=31s", w.token, nil, 400, "invalid", "wait"},
		{"ClaimMaxTooLarge", "POST", wPath + "/claim", w.token, []byte(`{"max":1000}`), 400, "invalid", "max"},
		{"ProgressOutOfRange", "POST", "/v1/tasks/" + ct.ID.String() + "/progress", w.token, []byte(`{"worker_id":"` + w.id.String() + `","lease_token":"` + ct.LeaseToken.String() + `","progress":1.5}`), 400, "invalid", "progress"},
		{"LogStream", "POST", wPath + "/logs", w.token, []byte(`{"lines":[{"stream":"video","line":"x"}]}`), 400, "invalid", "lines[0].stream"},
		{"UnknownWorkerForOperator", "POST", "/v1/workers/" + uuid.NewString() + "/drain", opToken, nil, 404, "not_found", ""},
		{"NoRoute", "GET", "/v1/nothing", opToken, nil, 404, "not_found", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, detail := b.raw(t, tc.method, tc.path, tc.token, tc.body)
			if status != tc.status || detail.Code != tc.code {
				t.Fatalf("got %d %+v, want %d %s", status, detail, tc.status, tc.code)
			}
			if tc.field != "" && detail.Field != tc.field {
				t.Fatalf("field = %q (%s), want %q", detail.Field, detail.Message, tc.field)
			}
			if strings.Contains(detail.Message, opToken) || strings.Contains(detail.Message, w.token) {
				t.Fatalf("error message leaks a token: %s", detail.Message)
			}
		})
	}
	// Nothing changed: same number of tasks, the claimed one still running
	// under its lease with no result.
	if n := b.taskCount(t); n != before {
		t.Fatalf("task count changed from %d to %d", before, n)
	}
	got, err := b.op.Task(ctx, ct.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != core.TaskRunning || got.Result != nil || got.Progress != nil {
		t.Fatalf("claimed task changed: %+v", got)
	}
	if err := w.c.Complete(ctx, w.id, ct.Lease(), nil); err != nil {
		t.Fatalf("the real lease still works: %v", err)
	}
}

func TestOwnerToken(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	res, err := b.owner.Submit(ctx, &wire.SubmitRequest{Type: "x"})
	if err != nil {
		t.Fatalf("owner submit: %v", err)
	}
	if res.Task.Owner != "alice" {
		t.Fatalf("owner = %q, want alice (forced by the token)", res.Task.Owner)
	}
	other := b.submit(t, "y") // owner default
	tasks, err := b.owner.Tasks(ctx, wire.TaskFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 || tasks[0].ID != res.Task.ID {
		t.Fatalf("owner sees %d tasks, want only its own", len(tasks))
	}
	if _, err := b.owner.Cancel(ctx, other.ID); client.StatusOf(err) != http.StatusForbidden {
		t.Fatalf("owner cancels another's task: %v, want 403", err)
	}
	if got, _ := b.op.Task(ctx, other.ID); got.State != core.TaskQueued {
		t.Fatalf("the other task changed: %s", got.State)
	}
	if c, err := b.owner.Cancel(ctx, res.Task.ID); err != nil || c.State != core.TaskCancelled {
		t.Fatalf("owner cancels own task: %+v %v", c, err)
	}
}

func TestWorkerDrainAndTerminate(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	w := b.addWorker(t, "default")
	// A running task keeps the drained worker draining after the tick.
	b.submit(t, "render")
	b.claimOne(t, w)
	// The API records the operator's request (202, the worker as it is);
	// the orchestrator, the only writer of worker state, applies it in its
	// next tick.
	o := b.orchestrator(t)
	wk, err := b.op.Drain(ctx, w.id, "maintenance")
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	if wk.State != core.WorkerReady {
		t.Fatalf("drain answered with the worker changed before the tick: %+v", wk)
	}
	tick(t, o)
	wk, err = b.worker(ctx, w.id)
	if err != nil || wk.State != core.WorkerDraining || wk.Failure != "" || !strings.HasPrefix(wk.Reason, "operator") {
		t.Fatalf("drained worker = %+v %v", wk, err)
	}
	hb, err := w.c.Heartbeat(ctx, w.id, &wire.HeartbeatRequest{})
	if err != nil || !hb.Drain {
		t.Fatalf("heartbeat after drain: %+v %v", hb, err)
	}
	if _, err = b.op.Terminate(ctx, w.id, ""); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	tick(t, o)
	wk, err = b.worker(ctx, w.id)
	if err != nil || (wk.State != core.WorkerTerminating && wk.State != core.WorkerTerminated) || wk.Failure != "" || wk.Reason != "operator" {
		t.Fatalf("terminated worker = %+v %v", wk, err)
	}
	hb, err = w.c.Heartbeat(ctx, w.id, &wire.HeartbeatRequest{})
	if err != nil || !hb.Stop {
		t.Fatalf("heartbeat after terminate: %+v %v", hb, err)
	}
	if _, err := b.op.Drain(ctx, w.id, ""); client.StatusOf(err) != http.StatusConflict {
		t.Fatalf("drain a terminating worker: %v, want 409", err)
	}
	// The terminated worker stays listed (the tick may have spawned a
	// replacement for its task).
	if _, err := b.worker(ctx, w.id); err != nil {
		t.Fatalf("workers: %v", err)
	}
	evs, err := b.op.Events(ctx, wire.EventFilter{WorkerID: w.id.String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < 2 {
		t.Fatalf("want the operator's two actions in the event log, got %d events", len(evs))
	}
}

func TestBatchSubmitWithDependencies(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	res, err := b.op.SubmitBatch(ctx, []wire.SubmitRequest{
		{Type: "prep", IdempotencyKey: "k1"},
		{Type: "render", DependsOn: []string{"#0"}, Timeout: new(wire.Duration(30 * time.Minute))},
	})
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	if len(res) != 2 || res[1].Task.DepsPending != 1 || res[1].Task.Timeout != 30*time.Minute {
		t.Fatalf("batch results = %+v", res)
	}
	again, err := b.op.Submit(ctx, &wire.SubmitRequest{Type: "prep", IdempotencyKey: "k1"})
	if err != nil || !again.Existing || again.Task.ID != res[0].Task.ID {
		t.Fatalf("idempotent resubmit: %+v %v", again, err)
	}
}

func TestOpsEndpoints(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	if err := b.op.Health(ctx); err != nil {
		t.Fatalf("healthz: %v", err)
	}
	if err := b.op.Ready(ctx); err != nil {
		t.Fatalf("readyz: %v", err)
	}
	st, err := b.op.Status(ctx)
	if err != nil || !strings.Contains(string(st), "HEALTHY") {
		t.Fatalf("status: %s %v", st, err)
	}
	b.raw(t, "GET", "/v1/tasks", "bad", nil)
	resp, err := http.Get(b.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"drover_api_requests_total", `drover_api_errors_total{code="unauthorized"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
}

func TestLongPollServesSeveralWaiters(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	type result struct {
		tasks []wire.ClaimedTask
		err   error
	}
	ch := make(chan result, 3)
	for range 3 {
		w := b.addWorker(t, "default")
		go func() {
			tasks, err := w.c.Claim(ctx, w.id, 1, 20*time.Second)
			ch <- result{tasks, err}
		}()
	}
	waitFor(t, func() bool { return metricValue(t, b, "drover_api_claim_waiters") == 3 })
	res, err := b.op.SubmitBatch(ctx, []wire.SubmitRequest{{Type: "a"}, {Type: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[uuid.UUID]bool{}
	for range 2 {
		select {
		case r := <-ch:
			if r.err != nil || len(r.tasks) != 1 {
				t.Fatalf("claim: %+v %v", r.tasks, r.err)
			}
			got[r.tasks[0].ID] = true
		case <-time.After(10 * time.Second):
			t.Fatal("parked claims were not served")
		}
	}
	if !got[res[0].Task.ID] || !got[res[1].Task.ID] {
		t.Fatalf("claimed %v, want both submitted tasks once each", got)
	}
	// The third claimer keeps waiting; closing the server releases it empty.
	waitFor(t, func() bool { return metricValue(t, b, "drover_api_claim_waiters") == 1 })
	b.api.Close()
	if r := <-ch; r.err != nil || len(r.tasks) != 0 {
		t.Fatalf("third claim: %+v %v", r.tasks, r.err)
	}
}

func TestCompleteBatch(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	w := b.addWorker(t, "default")
	if _, err := b.op.SubmitBatch(ctx, []wire.SubmitRequest{{Type: "a"}, {Type: "b"}, {Type: "c"}}); err != nil {
		t.Fatal(err)
	}
	tasks, err := w.c.Claim(ctx, w.id, 3, 0)
	if err != nil || len(tasks) != 3 {
		t.Fatalf("claim 3: %d %v", len(tasks), err)
	}
	stale := wire.CompleteItem{TaskID: tasks[2].ID, LeaseToken: uuid.New()}
	lost, err := w.c.CompleteBatch(ctx, w.id, []wire.CompleteItem{
		{TaskID: tasks[0].ID, LeaseToken: tasks[0].LeaseToken, Result: json.RawMessage(`{"n":0}`)},
		{TaskID: tasks[1].ID, LeaseToken: tasks[1].LeaseToken},
		stale,
	})
	if err != nil {
		t.Fatalf("complete batch: %v", err)
	}
	if len(lost) != 1 || lost[0].TaskID != stale.TaskID {
		t.Fatalf("lost = %+v, want only the stale item", lost)
	}
	for i, want := range []core.TaskState{core.TaskSucceeded, core.TaskSucceeded, core.TaskRunning} {
		got, err := b.op.Task(ctx, tasks[i].ID)
		if err != nil || got.State != want {
			t.Fatalf("task %d: %v %v, want %s", i, got.State, err, want)
		}
	}
	// Bad batches change nothing.
	status, detail := b.raw(t, "POST", "/v1/workers/"+w.id.String()+"/complete", w.token,
		[]byte(`{"items":[{"task_id":"`+tasks[2].ID.String()+`","lease_token":"`+tasks[2].LeaseToken.String()+`","result":"x"}]}`))
	if status != 400 || detail.Field != "items[0].result" {
		t.Fatalf("bad batch: %d %+v", status, detail)
	}
	if got, _ := b.op.Task(ctx, tasks[2].ID); got.State != core.TaskRunning {
		t.Fatalf("rejected batch changed the task: %s", got.State)
	}
}
