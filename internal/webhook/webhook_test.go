package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/droverhq/drover/internal/webhook"
)

var secret = []byte("test-webhook-secret")

type bundle struct {
	st    store.Store
	clock *core.FakeClock
	q     *queue.Service
}

func setup(t *testing.T) *bundle { return setupTB(t) }

func setupTB(t testing.TB) *bundle {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock := core.NewFakeClock(storetest.Base)
	return &bundle{st: st, clock: clock, q: queue.New(st, clock, queue.Config{}, nil)}
}

func (b *bundle) dispatcher(t *testing.T, cfg webhook.Config) *webhook.Dispatcher {
	t.Helper()
	cfg.Store, cfg.Clock, cfg.Secret = b.st, b.clock, secret
	d, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (b *bundle) submit(t *testing.T, req queue.SubmitRequest) *core.Task {
	t.Helper()
	res, err := b.q.Submit(t.Context(), []queue.SubmitRequest{req})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Task
}

// succeed claims and completes task on a fresh worker.
func (b *bundle) succeed(t *testing.T, task *core.Task) {
	t.Helper()
	w := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerReady)
	claimed := storetest.Claim(t, b.st, w, b.clock.Now(), 1, 0)
	if len(claimed) != 1 || claimed[0].ID != task.ID {
		t.Fatalf("claimed %v, want task %s", claimed, task.ID)
	}
	lost, err := b.st.TaskComplete(t.Context(), []*store.TaskCompleteParams{{Now: b.clock.Now(), WorkerID: w.ID,
		Items: []store.TaskCompletion{{Lease: storetest.LeaseOf(t, claimed[0]), Result: json.RawMessage(`{"frames":3}`)}}}})
	if err != nil || len(lost[0]) != 0 {
		t.Fatalf("complete: %v, lost %v", err, lost)
	}
}

type delivery struct {
	header, id string
	body       []byte
}

// receiver is a loopback webhook receiver answering 500 to the first fail
// requests and 204 to the rest.
type receiver struct {
	mu       sync.Mutex
	fail     int
	all      []delivery
	accepted []delivery
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	d := delivery{header: r.Header.Get(webhook.SignatureHeader), id: r.Header.Get("Drover-Delivery-Id"), body: body}
	rc.all = append(rc.all, d)
	if len(rc.all) <= rc.fail {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	rc.accepted = append(rc.accepted, d)
	w.WriteHeader(http.StatusNoContent)
}

// step runs one dispatcher step and returns its attempts.
func step(t *testing.T, d *webhook.Dispatcher) int {
	t.Helper()
	n, err := d.Step(t.Context())
	if err != nil {
		t.Fatalf("Step: %v", err)
	}
	return n
}

func TestFailsTwiceThenOneAcceptedSignedDelivery(t *testing.T) {
	b := setup(t)
	rc := &receiver{fail: 2}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	d := b.dispatcher(t, webhook.Config{BackoffBase: time.Second})

	task := b.submit(t, queue.SubmitRequest{Type: "render", CallbackURL: srv.URL + "/hook"})
	if n := step(t, d); n != 0 {
		t.Fatalf("attempts before the task is final: %d", n)
	}
	b.succeed(t, task)

	if n := step(t, d); n != 1 {
		t.Fatalf("first step attempts = %d, want 1", n)
	}
	if n := step(t, d); n != 0 {
		t.Fatalf("attempts before the backoff elapsed: %d", n)
	}
	b.clock.Advance(time.Second)
	if n := step(t, d); n != 1 {
		t.Fatalf("second attempt = %d, want 1", n)
	}
	b.clock.Advance(2 * time.Second)
	if n := step(t, d); n != 1 {
		t.Fatalf("third attempt = %d, want 1", n)
	}
	b.clock.Advance(2 * time.Hour)
	if n := step(t, d); n != 0 {
		t.Fatalf("attempts after delivery: %d", n)
	}

	if len(rc.all) != 3 || len(rc.accepted) != 1 {
		t.Fatalf("requests %d, accepted %d; want 3 and 1", len(rc.all), len(rc.accepted))
	}
	wantID := task.ID.String() + ":succeeded"
	for i, got := range rc.all {
		if got.id != wantID {
			t.Fatalf("request %d delivery id %q, want %q", i, got.id, wantID)
		}
	}
	acc := rc.accepted[0]
	if err := webhook.Verify(secret, acc.header, acc.body, b.clock.Now(), 3*time.Hour); err != nil {
		t.Fatalf("signature of the accepted delivery: %v", err)
	}
	if err := webhook.Verify([]byte("another secret"), acc.header, acc.body, b.clock.Now(), 0); err == nil {
		t.Fatal("a signature verified under the wrong secret")
	}
	if err := webhook.Verify(secret, acc.header, append([]byte(" "), acc.body...), b.clock.Now(), 0); err == nil {
		t.Fatal("a signature verified over a changed body")
	}
	var p webhook.Payload
	if err := json.Unmarshal(acc.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.ID != wantID || p.TaskID != task.ID.String() || p.State != "succeeded" || string(p.Result) != `{"frames":3}` || p.FinishedAt == nil || p.Outputs == nil {
		t.Fatalf("payload %+v", p)
	}
}

func TestReceiverDownPastBudgetLeavesEvent(t *testing.T) {
	b := setup(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/hook?token=s3cr3t-in-query"
	srv.Close() // nothing listens there any more

	// Attempts at +0s, +4s; the next would be at +12s, past the 10s budget.
	d := b.dispatcher(t, webhook.Config{BackoffBase: 4 * time.Second, Budget: 10 * time.Second, AttemptTimeout: 5 * time.Second})
	task := b.submit(t, queue.SubmitRequest{Type: "render", CallbackURL: url})
	if _, err := b.q.Cancel(t.Context(), task.ID); err != nil {
		t.Fatal(err)
	}
	total := 0
	for range 10 {
		total += step(t, d)
		b.clock.Advance(4 * time.Second)
	}
	if total != 2 {
		t.Fatalf("attempts = %d, want 2 within the budget", total)
	}
	evs, err := b.st.EventList(t.Context(), &store.EventListParams{Kinds: []core.EventKind{webhook.EventFailed}})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].TaskID != task.ID.String() {
		t.Fatalf("webhook.failed events %+v, want one for task %s", evs, task.ID)
	}
	if !strings.Contains(evs[0].Message, task.ID.String()+":cancelled") || strings.Contains(evs[0].Message, "s3cr3t") {
		t.Fatalf("event message %q: want the delivery id and no query token", evs[0].Message)
	}
}

func TestMaxAttemptsBoundsRetries(t *testing.T) {
	b := setup(t)
	rc := &receiver{fail: 1000}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	d := b.dispatcher(t, webhook.Config{BackoffBase: time.Second, BackoffMax: time.Second, MaxAttempts: 3})
	task := b.submit(t, queue.SubmitRequest{Type: "render", CallbackURL: srv.URL})
	if _, err := b.q.Cancel(t.Context(), task.ID); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		step(t, d)
		b.clock.Advance(time.Second)
	}
	if len(rc.all) != 3 {
		t.Fatalf("requests = %d, want 3 (max attempts)", len(rc.all))
	}
}

func TestOwnerCallbackAndBadURL(t *testing.T) {
	b := setup(t)
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	b.q = queue.New(b.st, b.clock, queue.Config{OwnerCallbacks: map[string]string{"web": srv.URL}}, nil)
	d := b.dispatcher(t, webhook.Config{})
	task := b.submit(t, queue.SubmitRequest{Type: "render", Owner: "web"})
	other := b.submit(t, queue.SubmitRequest{Type: "render", Owner: "cli"})
	if _, err := b.q.Cancel(t.Context(), task.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.q.Cancel(t.Context(), other.ID); err != nil {
		t.Fatal(err)
	}
	if n := step(t, d); n != 1 || len(rc.accepted) != 1 || rc.accepted[0].id != task.ID.String()+":cancelled" {
		t.Fatalf("attempts %d, accepted %+v: want the owner's one task", n, rc.accepted)
	}

	for _, tc := range []struct{ url, want string }{
		{"ftp://example.com/x", "http"},
		{"/relative", "http"},
		{"http://user:pw@example.com/", "user:password"},
		{"https://example.com/" + strings.Repeat("a", 2048), "2048"},
	} {
		_, err := b.q.Submit(t.Context(), []queue.SubmitRequest{{Type: "render", CallbackURL: tc.url}})
		var ce *core.Error
		if !errors.As(err, &ce) || ce.Field != "callback_url" || !strings.Contains(ce.Message, tc.want) {
			t.Fatalf("callback_url %.40q: error %v, want EINVALID on callback_url mentioning %q", tc.url, err, tc.want)
		}
		if strings.Contains(err.Error(), "pw@") {
			t.Fatalf("error echoes the credentials: %v", err)
		}
	}
	// Nothing was inserted by the rejected submits.
	ts, err := b.q.List(t.Context(), nil)
	if err != nil || len(ts) != 2 {
		t.Fatalf("tasks after bad submits: %d (%v), want 2", len(ts), err)
	}
}

// TestRetriedTaskGetsOneDeliveryPerFinalState: an operator retry of a
// final task re-arms its callback; each final state it reaches is its own
// delivery with its own idempotency id, on both backends, including a
// final state that is retried before the dispatcher saw it.
func TestRetriedTaskGetsOneDeliveryPerFinalState(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) store.Store{
		"sqlite":   func(t *testing.T) store.Store { return setup(t).st },
		"postgres": func(t *testing.T) store.Store { return pgtest.Open(t, 4) },
	} {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			clock := core.NewFakeClock(storetest.Base)
			b := &bundle{st: st, clock: clock, q: queue.New(st, clock, queue.Config{}, nil)}
			rc := &receiver{}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			d := b.dispatcher(t, webhook.Config{})
			task := b.submit(t, queue.SubmitRequest{Type: "render", CallbackURL: srv.URL})
			id := task.ID.String()
			cancel := func() {
				t.Helper()
				if _, err := b.q.Cancel(t.Context(), task.ID); err != nil {
					t.Fatal(err)
				}
			}
			retry := func() {
				t.Helper()
				if _, err := b.q.Retry(t.Context(), task.ID); err != nil {
					t.Fatal(err)
				}
			}
			cancel()
			step(t, d)
			retry()
			cancel()
			step(t, d)
			retry()
			cancel()
			retry() // before the dispatcher ran: the cancelled state still gets its delivery
			b.succeed(t, task)
			step(t, d)
			step(t, d) // nothing more
			want := []string{id + ":cancelled", id + ":cancelled:2", id + ":cancelled:3", id + ":succeeded:4"}
			got := map[string]int{}
			for _, a := range rc.accepted {
				got[a.id]++
			}
			if len(rc.accepted) != len(want) {
				t.Fatalf("accepted %d deliveries %v, want %v", len(rc.accepted), got, want)
			}
			for _, w := range want {
				if got[w] != 1 {
					t.Fatalf("deliveries %v, want exactly one of each of %v", got, want)
				}
			}
			for _, a := range rc.accepted {
				var p webhook.Payload
				if err := json.Unmarshal(a.body, &p); err != nil {
					t.Fatal(err)
				}
				if p.ID != a.id || !strings.Contains(a.id, ":"+p.State) {
					t.Fatalf("delivery %s carries id %s state %s", a.id, p.ID, p.State)
				}
				if p.ID == id+":succeeded:4" && string(p.Result) != `{"frames":3}` {
					t.Fatalf("final delivery result %s", p.Result)
				}
			}
		})
	}
}
