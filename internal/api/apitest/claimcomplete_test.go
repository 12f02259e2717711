package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/agent"
	"github.com/droverhq/drover/internal/api"
	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/google/uuid"
)

// backends opens a fresh migrated store of each kind.
var backends = map[string]func(t *testing.T) store.Store{
	"SQLite": func(t *testing.T) store.Store {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "api.db"))
		if err != nil {
			t.Fatalf("open sqlite: %v", err)
		}
		if _, err := st.Migrate(t.Context()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		return st
	},
	"PostgreSQL": func(t *testing.T) store.Store {
		pgtest.URL(t)
		return pgtest.Open(t, 4)
	},
}

// onBackends runs fn on SQLite and PostgreSQL, each with its own server.
func onBackends(t *testing.T, fn func(t *testing.T, b *testBundle)) {
	t.Helper()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, setupOn(t, open(t), nil, nil))
		})
	}
}

func (b *testBundle) taskState(t *testing.T, id uuid.UUID) core.TaskState {
	t.Helper()
	got, err := b.op.Task(t.Context(), id)
	if err != nil {
		t.Fatalf("get task %s: %v", id, err)
	}
	return got.State
}

func item(ct wire.ClaimedTask, result string) wire.CompleteItem {
	return wire.CompleteItem{TaskID: ct.ID, LeaseToken: ct.LeaseToken, Result: json.RawMessage(result)}
}

// A claim that carries the completion of the task it ran completes it
// (with its result) and claims the next task in the same request.
func TestClaimCarriesCompletion(t *testing.T) {
	t.Parallel()
	onBackends(t, func(t *testing.T, b *testBundle) {
		w := b.addWorker(t, "default")
		first := b.submit(t, "render")
		ct := b.claimOne(t, w)
		if ct.ID != first.ID {
			t.Fatalf("claimed %s, want %s", ct.ID, first.ID)
		}
		second := b.submit(t, "render")
		// The worker's one slot is busy until the completion commits:
		// the claim can only get the second task because it does.
		tasks, lost, err := w.c.ClaimComplete(t.Context(), w.id, 1, 0, []wire.CompleteItem{item(ct, `{"frames":3}`)})
		if err != nil {
			t.Fatalf("claim with completion: %v", err)
		}
		if len(lost) != 0 || len(tasks) != 1 || tasks[0].ID != second.ID {
			t.Fatalf("got tasks %v lost %v; want task %s and no lost lease", tasks, lost, second.ID)
		}
		done, err := b.op.Task(t.Context(), first.ID)
		if err != nil || done.State != core.TaskSucceeded || string(done.Result) != `{"frames":3}` {
			t.Fatalf("first task after the carried completion: %+v, %v", done, err)
		}
		// An old client's claim (no complete field) answers without one.
		code, _ := b.raw(t, http.MethodPost, "/v1/workers/"+w.id.String()+"/claim", w.token, []byte(`{"max":1}`))
		if code != http.StatusOK {
			t.Fatalf("plain claim: status %d", code)
		}
	})
}

// A carried completion whose lease is stale is reported lost; the claim
// still runs and grants a task.
func TestClaimStaleCompletionStillClaims(t *testing.T) {
	t.Parallel()
	onBackends(t, func(t *testing.T, b *testBundle) {
		w := b.addWorker(t, "default")
		b.submit(t, "render")
		ct := b.claimOne(t, w)
		if err := w.c.Complete(t.Context(), w.id, ct.Lease(), nil); err != nil {
			t.Fatalf("complete: %v", err)
		}
		next := b.submit(t, "render")
		tasks, lost, err := w.c.ClaimComplete(t.Context(), w.id, 1, 0, []wire.CompleteItem{item(ct, `{"again":true}`)})
		if err != nil {
			t.Fatalf("claim with a stale completion: %v", err)
		}
		if len(lost) != 1 || lost[0] != ct.Lease() {
			t.Fatalf("lost %v, want the stale lease %v", lost, ct.Lease())
		}
		if len(tasks) != 1 || tasks[0].ID != next.ID {
			t.Fatalf("claimed %v, want %s", tasks, next.ID)
		}
		done, err := b.op.Task(t.Context(), ct.ID)
		if err != nil || done.State != core.TaskSucceeded || string(done.Result) == `{"again":true}` {
			t.Fatalf("stale completion changed the task: %+v, %v", done, err)
		}
	})
}

// One bad completion item rejects the whole claim naming complete[i] and
// its field: the good item is not completed and nothing is claimed.
func TestClaimBadCompletionChangesNothing(t *testing.T) {
	t.Parallel()
	onBackends(t, func(t *testing.T, b *testBundle) {
		w := b.addWorkerN(t, "default", 2)
		b.submit(t, "render")
		b.submit(t, "render")
		tasks, err := w.c.Claim(t.Context(), w.id, 2, 0)
		if err != nil || len(tasks) != 2 {
			t.Fatalf("claim two: %v, %v", tasks, err)
		}
		queued := b.submit(t, "render")
		cases := []struct {
			name, bad, field string
		}{
			{"Result", `{"task_id":"` + tasks[1].ID.String() + `","lease_token":"` + tasks[1].LeaseToken.String() + `","result":[1]}`, "complete[1].result"},
			{"Token", `{"task_id":"` + tasks[1].ID.String() + `"}`, "complete[1].lease_token"},
			{"Twice", `{"task_id":"` + tasks[0].ID.String() + `","lease_token":"` + tasks[0].LeaseToken.String() + `"}`, "complete[1].task_id"},
			// encoding/json names an unknown key without its item, in
			// the batch completion's answer too (checked below).
			{"Unknown", `{"task_id":"` + tasks[1].ID.String() + `","lease_token":"` + tasks[1].LeaseToken.String() + `","colour":"red"}`, "colour"},
		}
		good := `{"task_id":"` + tasks[0].ID.String() + `","lease_token":"` + tasks[0].LeaseToken.String() + `","result":{"ok":1}}`
		for _, tc := range cases {
			body := []byte(`{"max":2,"complete":[` + good + `,` + tc.bad + `]}`)
			code, e := b.raw(t, http.MethodPost, "/v1/workers/"+w.id.String()+"/claim", w.token, body)
			if code != http.StatusBadRequest || e.Field != tc.field {
				t.Fatalf("%s: got %d %+v, want 400 naming %s", tc.name, code, e, tc.field)
			}
			// The batch completion answers the same items alike.
			code, be := b.raw(t, http.MethodPost, "/v1/workers/"+w.id.String()+"/complete", w.token, []byte(`{"items":[`+good+`,`+tc.bad+`]}`))
			if code != http.StatusBadRequest || strings.Replace(be.Field, "items[", "complete[", 1) != e.Field || be.Message != e.Message {
				t.Fatalf("%s: batch completion answered %d %+v, the claim %+v", tc.name, code, be, e)
			}
			for _, ct := range tasks {
				if s := b.taskState(t, ct.ID); s != core.TaskRunning {
					t.Fatalf("%s: task %s is %s after a rejected claim, want running", tc.name, ct.ID, s)
				}
			}
			if s := b.taskState(t, queued.ID); s != core.TaskQueued {
				t.Fatalf("%s: queued task is %s after a rejected claim, want queued", tc.name, s)
			}
		}
	})
}

// A claim that finds nothing parks with its completion already durable;
// a later submit wakes it and the reply carries both.
func TestParkedClaimCarriesCompletion(t *testing.T) {
	t.Parallel()
	onBackends(t, func(t *testing.T, b *testBundle) {
		w := b.addWorker(t, "default")
		b.submit(t, "render")
		ct := b.claimOne(t, w)
		type result struct {
			tasks []wire.ClaimedTask
			lost  []wire.Lease
			err   error
		}
		ch := make(chan result, 1)
		go func() {
			tasks, lost, err := w.c.ClaimComplete(t.Context(), w.id, 1, 20*time.Second, []wire.CompleteItem{item(ct, `{"n":1}`)})
			ch <- result{tasks, lost, err}
		}()
		waitFor(t, func() bool { return metricValue(t, b, "drover_api_claim_waiters") == 1 })
		// Parked: the completion committed before the claim waited.
		if s := b.taskState(t, ct.ID); s != core.TaskSucceeded {
			t.Fatalf("task is %s while its carrying claim is parked, want succeeded", s)
		}
		next := b.submit(t, "render")
		select {
		case r := <-ch:
			if r.err != nil || len(r.lost) != 0 || len(r.tasks) != 1 || r.tasks[0].ID != next.ID {
				t.Fatalf("parked claim: tasks %v lost %v err %v; want %s", r.tasks, r.lost, r.err, next.ID)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("parked claim carrying a completion did not wake on submit")
		}
	})
}

// countRequests counts the requests per endpoint kind (the last path
// element: claim, complete, heartbeat, …).
type countRequests struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countRequests) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
		c.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (c *countRequests) get(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[kind]
}

// The agent reports each finished task on the claim that refills its slot:
// N tasks cost N+1 claims (the last one parks with the last completion)
// and no completion request of their own.
func TestAgentOneRequestPerTask(t *testing.T) {
	t.Parallel()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			counts := &countRequests{n: map[string]int{}}
			b := setupOn(t, open(t), nil, counts.wrap)
			w := b.addWorker(t, "default")
			const n = 8
			ids := make([]uuid.UUID, n)
			for i := range ids {
				ids[i] = b.submit(t, "render").ID
			}
			a, done := runAgent(t, w)
			waitSucceeded(t, b, ids)
			claims, completes := counts.get("claim"), counts.get("complete")
			a.Drain()
			if err := <-done; err != nil {
				t.Fatalf("agent: %v", err)
			}
			if claims != n+1 || completes != 0 {
				t.Fatalf("%d tasks took %d claims and %d completion requests; want %d and 0", n, claims, completes, n+1)
			}
		})
	}
}

// oldServer answers a claim that carries completions as a server that
// predates the field does (its strict decoder: 400 naming "complete").
func oldServer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/claim") {
			body, _ := io.ReadAll(r.Body)
			if strings.Contains(string(body), `"complete"`) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"error":{"code":"invalid","field":"complete","message":"unknown field"}}`))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h.ServeHTTP(w, r)
	})
}

// Against a server that does not know the field, the agent completes each
// task with its own request (after the one refused claim) and loses none.
func TestAgentFallsBackOnOldServer(t *testing.T) {
	t.Parallel()
	counts := &countRequests{n: map[string]int{}}
	b := setupWith(t, nil, func(h http.Handler) http.Handler { return counts.wrap(oldServer(h)) })
	w := b.addWorker(t, "default")
	const n = 4
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = b.submit(t, "render").ID
	}
	a, done := runAgent(t, w)
	waitSucceeded(t, b, ids)
	a.Drain()
	if err := <-done; err != nil {
		t.Fatalf("agent: %v", err)
	}
	if c := counts.get("complete"); c != n {
		t.Fatalf("%d completion requests for %d tasks, want one each", c, n)
	}
	_, _, err := w.c.ClaimComplete(t.Context(), w.id, 1, 0, []wire.CompleteItem{{TaskID: ids[0], LeaseToken: ids[0]}})
	if !client.IsUnknownComplete(err) {
		t.Fatalf("old server's answer: %v, want IsUnknownComplete", err)
	}
}

// runAgent runs a one-slot agent for worker w until the test ends.
func runAgent(t *testing.T, w *testWorker) (*agent.Agent, <-chan error) {
	t.Helper()
	a := agent.New(w.c, agent.Options{
		WorkerID: w.id,
		Runner:   &agent.Runner{Command: `cat >/dev/null; printf '{"ok":true}\n'`, KillGrace: time.Second, TempDir: t.TempDir()},
		GPU:      agent.StaticGPUs{{Index: 0, Name: "Test GPU", MemoryMiB: 1024}},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return a, done
}

// waitSucceeded waits (waitFor's 10 s at most) until every task in ids
// succeeded.
func waitSucceeded(t *testing.T, b *testBundle, ids []uuid.UUID) {
	t.Helper()
	for _, id := range ids {
		waitFor(t, func() bool { return b.taskState(t, id) == core.TaskSucceeded })
	}
}

// addWorkerN is addWorker with conc slots.
func (b *testBundle) addWorkerN(t *testing.T, pool string, conc int) *testWorker {
	t.Helper()
	id := uuid.Must(uuid.NewV7())
	tok := "worker-token-" + id.String()
	now := b.clock.Now()
	err := b.st.WorkerInsert(t.Context(), &core.Worker{
		ID: id, Pool: pool, Provider: "sim", Placement: pool + "/gpu/r", State: core.WorkerReady,
		TokenHash: api.HashToken(tok), Concurrency: conc, CreatedAt: now, StateChangedAt: now, ReadyAt: &now,
	})
	if err != nil {
		t.Fatalf("insert worker: %v", err)
	}
	return &testWorker{id: id, token: tok, c: mustClient(t, b.srv.URL, tok)}
}
