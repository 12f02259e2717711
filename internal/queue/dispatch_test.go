package queue

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// stepQueue is a Claimer whose ClaimMany blocks until the test answers it, so
// the dispatcher's interleavings can be driven step by step. Only ClaimMany
// and Notify are used by the dispatcher (Claim only when ClaimMany fails);
// the embedded nil Claimer panics on anything else.
type stepQueue struct {
	Claimer
	calls   chan []uuid.UUID
	answers chan [][]*core.Task

	mu     sync.Mutex
	notify chan struct{}
	// failNext, when set, is returned by the next ClaimMany (after the call
	// is announced on calls).
	failNext error
}

func newStepQueue() *stepQueue {
	return &stepQueue{calls: make(chan []uuid.UUID), answers: make(chan [][]*core.Task), notify: make(chan struct{})}
}

func (q *stepQueue) ClaimMany(ctx context.Context, reqs []ClaimRequest) ([][]*core.Task, error) {
	ids := make([]uuid.UUID, len(reqs))
	for i, r := range reqs {
		ids[i] = r.WorkerID
	}
	q.calls <- ids
	q.mu.Lock()
	err := q.failNext
	q.failNext = nil
	q.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return <-q.answers, nil
}

func (q *stepQueue) Notify() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.notify
}

// fire closes the current Notify generation, as a submit does.
func (q *stepQueue) fire() {
	q.mu.Lock()
	close(q.notify)
	q.notify = make(chan struct{})
	q.mu.Unlock()
}

// startDispatcher runs d until the test ends.
func startDispatcher(t *testing.T, d *ClaimDispatcher) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// A claimer whose wait ends while the dispatcher is claiming for it must be
// answered when that claim comes back empty, not parked again past its
// deadline.
func TestDispatcherAnswersAbandonedClaimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newStepQueue()
		waiters := prometheus.NewGauge(prometheus.GaugeOpts{Name: "claim_waiters"})
		d := NewClaimDispatcher(q, time.Hour, waiters, slog.New(slog.DiscardHandler))
		startDispatcher(t, d)

		worker := uuid.New()
		type result struct {
			tasks []*core.Task
			err   error
		}
		got := make(chan result, 1)
		go func() {
			tasks, err := d.Claim(t.Context(), worker, 1, time.Second, nil)
			got <- result{tasks, err}
		}()
		if ids := <-q.calls; len(ids) != 1 || ids[0] != worker {
			t.Fatalf("claimed for %v, want [%s]", ids, worker)
		}
		// The claim is in flight; the claimer's second passes.
		time.Sleep(2 * time.Second) // fake time inside the bubble
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("claimer returned before the in-flight claim answered")
		default:
		}
		q.answers <- [][]*core.Task{{}} // nothing claimable
		r := <-got
		if r.err != nil || len(r.tasks) != 0 {
			t.Fatalf("abandoned claimer got %v, %v", r.tasks, r.err)
		}
		d.mu.Lock()
		parked := len(d.waiters)
		d.mu.Unlock()
		if parked != 0 {
			t.Fatalf("%d claimers still parked", parked)
		}
		if g := testutil.ToFloat64(waiters); g != 0 {
			t.Fatalf("claim_waiters = %v, want 0", g)
		}
	})
}

// A claim the dispatcher succeeds for is delivered even though the
// claimer's wait ran out meanwhile: tasks are never granted to nobody.
func TestDispatcherDeliversTasksToLateClaimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newStepQueue()
		d := NewClaimDispatcher(q, time.Hour, prometheus.NewGauge(prometheus.GaugeOpts{Name: "claim_waiters"}), slog.New(slog.DiscardHandler))
		startDispatcher(t, d)
		got := make(chan []*core.Task, 1)
		go func() {
			tasks, _ := d.Claim(t.Context(), uuid.New(), 1, time.Second, nil)
			got <- tasks
		}()
		<-q.calls
		time.Sleep(2 * time.Second)
		task := &core.Task{ID: uuid.New()}
		q.answers <- [][]*core.Task{{task}}
		if tasks := <-got; len(tasks) != 1 || tasks[0].ID != task.ID {
			t.Fatalf("late claimer got %v", tasks)
		}
	})
}

// N parked claimers are served by ONE ClaimMany call when work appears, in
// arrival order; a claim that arrives while that call runs goes into the
// next pass, alone (parked claimers are not re-asked on its account).
func TestDispatcherServesParkedClaimersInOneCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 5
		q := newStepQueue()
		waiters := prometheus.NewGauge(prometheus.GaugeOpts{Name: "claim_waiters"})
		d := NewClaimDispatcher(q, time.Hour, waiters, slog.New(slog.DiscardHandler))
		startDispatcher(t, d)

		type result struct {
			worker uuid.UUID
			tasks  []*core.Task
		}
		got := make(chan result, n+1)
		var workers []uuid.UUID
		for range n {
			w := uuid.New()
			workers = append(workers, w)
			go func() {
				tasks, err := d.Claim(t.Context(), w, 1, time.Minute, nil)
				if err != nil {
					t.Errorf("claim: %v", err)
				}
				got <- result{w, tasks}
			}()
			// Each first attempt finds nothing, so the claimer parks.
			ids := <-q.calls
			if len(ids) != 1 || ids[0] != w {
				t.Fatalf("first attempt for %v, want [%s]", ids, w)
			}
			q.answers <- [][]*core.Task{{}}
			synctest.Wait()
		}
		if g := testutil.ToFloat64(waiters); g != n {
			t.Fatalf("claim_waiters = %v, want %d", g, n)
		}

		// Work appears: one call serves every parked claimer.
		q.fire()
		ids := <-q.calls
		if !slices.Equal(ids, workers) {
			t.Fatalf("ClaimMany for %v, want all %d parked claimers in arrival order %v", ids, n, workers)
		}
		// A claim arriving during the call waits for the next pass.
		late := uuid.New()
		go func() {
			tasks, _ := d.Claim(t.Context(), late, 1, 0, nil)
			got <- result{late, tasks}
		}()
		synctest.Wait()
		answers := make([][]*core.Task, n)
		want := map[uuid.UUID]uuid.UUID{}
		for i, w := range workers {
			task := &core.Task{ID: uuid.New()}
			answers[i] = []*core.Task{task}
			want[w] = task.ID
		}
		q.answers <- answers
		if ids := <-q.calls; len(ids) != 1 || ids[0] != late {
			t.Fatalf("next pass claimed for %v, want only the late claimer %s", ids, late)
		}
		q.answers <- [][]*core.Task{{}}
		for range n + 1 {
			r := <-got
			if r.worker == late {
				if len(r.tasks) != 0 {
					t.Fatalf("late claimer got %v, want nothing", r.tasks)
				}
				continue
			}
			if len(r.tasks) != 1 || r.tasks[0].ID != want[r.worker] {
				t.Fatalf("worker %s got %v, want task %s", r.worker, r.tasks, want[r.worker])
			}
		}
		if g := testutil.ToFloat64(waiters); g != 0 {
			t.Fatalf("claim_waiters = %v, want 0", g)
		}
	})
}

// A batch claim that fails with a database error may have committed: the
// dispatcher answers every claimer of the batch with the error instead of
// claiming again one by one (stepQueue's nil Claimer would panic on Claim).
func TestDispatcherDoesNotReclaimAfterDatabaseError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newStepQueue()
		d := NewClaimDispatcher(q, time.Hour, prometheus.NewGauge(prometheus.GaugeOpts{Name: "claim_waiters"}), slog.New(slog.DiscardHandler))
		startDispatcher(t, d)
		errs := make(chan error, 2)
		for range 2 {
			w := uuid.New()
			go func() {
				_, err := d.Claim(t.Context(), w, 1, time.Minute, nil)
				errs <- err
			}()
			<-q.calls
			q.answers <- [][]*core.Task{{}}
			synctest.Wait()
		}
		dbErr := errors.New("conn closed while reading the claim's rows")
		q.mu.Lock()
		q.failNext = dbErr
		q.mu.Unlock()
		q.fire()
		if ids := <-q.calls; len(ids) != 2 {
			t.Fatalf("ClaimMany for %d claimers, want 2", len(ids))
		}
		for range 2 {
			if err := <-errs; !errors.Is(err, dbErr) {
				t.Fatalf("claimer got %v, want the batch's database error", err)
			}
		}
	})
}

// A completion wakes parked claims like a submit does: a task freed by its
// dependency is handed to a waiting claimer at once, not at the next poll
// (an hour here).
func TestCompletionWakesParkedClaim(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{})
	w := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerReady)
	tasks := mustSubmit(t, s, SubmitRequest{Type: "a"}, SubmitRequest{Type: "b", DependsOn: []string{"#0"}})
	first, err := s.Claim(t.Context(), w.ID, 1)
	if err != nil || len(first) != 1 || first[0].ID != tasks[0].ID {
		t.Fatalf("claim a: %v, %v", first, err)
	}

	parked := prometheus.NewGauge(prometheus.GaugeOpts{Name: "claim_waiters"})
	d := NewClaimDispatcher(s, time.Hour, parked, slog.New(slog.DiscardHandler))
	startDispatcher(t, d)
	got := make(chan claimResult, 1)
	go func() {
		ts, err := d.Claim(t.Context(), w.ID, 1, time.Hour, nil)
		got <- claimResult{ts, err}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(parked) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the claim never parked")
		}
		runtime.Gosched()
	}
	if err := s.Complete(t.Context(), w.ID, core.Lease{TaskID: first[0].ID, Token: *first[0].LeaseToken}, nil); err != nil {
		t.Fatalf("complete a: %v", err)
	}
	select {
	case r := <-got:
		if r.err != nil || len(r.tasks) != 1 || r.tasks[0].ID != tasks[1].ID {
			t.Fatalf("parked claim got %v, %v; want task b", r.tasks, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the completion did not wake the parked claim")
	}
}
