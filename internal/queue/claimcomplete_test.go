package queue

import (
	"context"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// txCountingStore counts the store calls that commit completions.
type txCountingStore struct {
	store.Store
	completes, completeClaims atomic.Int32
}

func (c *txCountingStore) TaskComplete(ctx context.Context, p []*store.TaskCompleteParams) ([][]core.Lease, error) {
	c.completes.Add(1)
	return c.Store.TaskComplete(ctx, p)
}

func (c *txCountingStore) TaskCompleteClaim(ctx context.Context, complete []*store.TaskCompleteParams, claims []*store.TaskClaimParams) ([][]core.Lease, [][]*core.Task, error) {
	c.completeClaims.Add(1)
	return c.Store.TaskCompleteClaim(ctx, complete, claims)
}

// A claim's carried completions commit in the transaction of the claim
// (one TaskCompleteClaim, no TaskComplete of their own), before it: the
// task that depended on the completed one is granted by that very claim. A
// stale lease is reported and does not stop the claim.
func TestClaimCompleteCommitsWithTheClaim(t *testing.T) {
	t.Parallel()
	st := &txCountingStore{Store: openSQLite(t)}
	s := New(st, core.NewFakeClock(storetest.Base), Config{}, nil)
	w := storetest.InsertWorker(t, st, core.DefaultPool, core.WorkerReady)
	tasks := mustSubmit(t, s, SubmitRequest{Type: "a"}, SubmitRequest{Type: "b", DependsOn: []string{"#0"}})
	held := mustClaim(t, s, w.ID, 1)
	d := NewClaimDispatcher(s, time.Hour, prometheus.NewGauge(prometheus.GaugeOpts{Name: "claim_waiters"}), slog.New(slog.DiscardHandler))
	startDispatcher(t, d)

	stale := core.Lease{TaskID: uuid.New(), Token: uuid.New()}
	got, carried, err := d.ClaimComplete(t.Context(), w.ID, 1, 0, nil,
		[]store.TaskCompletion{{Lease: leaseOf(held[0])}, {Lease: stale}})
	if err != nil {
		t.Fatalf("ClaimComplete: %v", err)
	}
	if len(got) != 1 || got[0].ID != tasks[1].ID {
		t.Fatalf("claim got %v, want task b (released by the carried completion)", got)
	}
	if carried == nil || len(carried.Lost) != 1 || carried.Lost[0] != stale {
		t.Fatalf("carried = %+v, want the stale lease lost", carried)
	}
	a, err := s.Get(t.Context(), tasks[0].ID)
	if err != nil || a.State != core.TaskSucceeded {
		t.Fatalf("task a: %v, %v; want succeeded", a, err)
	}
	if n, m := st.completes.Load(), st.completeClaims.Load(); n != 0 || m != 1 {
		t.Fatalf("%d TaskComplete and %d TaskCompleteClaim calls, want 0 and 1", n, m)
	}
}

// A claim that finds nothing parks with its completions committed by its
// first pass: later passes claim only, and the claimer gets the outcome
// with the task it finally receives.
func TestClaimCompleteParksAfterCommitting(t *testing.T) {
	t.Parallel()
	st := &txCountingStore{Store: openSQLite(t)}
	s := New(st, core.NewFakeClock(storetest.Base), Config{}, nil)
	w := storetest.InsertWorker(t, st, core.DefaultPool, core.WorkerReady)
	mustSubmit(t, s, SubmitRequest{Type: "a"})
	held := mustClaim(t, s, w.ID, 1)
	parked := prometheus.NewGauge(prometheus.GaugeOpts{Name: "claim_waiters"})
	d := NewClaimDispatcher(s, time.Hour, parked, slog.New(slog.DiscardHandler))
	startDispatcher(t, d)

	done := claimCompleteAsync(t.Context(), d, w.ID, time.Hour, []store.TaskCompletion{{Lease: leaseOf(held[0])}})
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(parked) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the claim never parked")
		}
		runtime.Gosched()
	}
	a, err := s.Get(t.Context(), held[0].ID)
	if err != nil || a.State != core.TaskSucceeded {
		t.Fatalf("parked claim's completion: %v, %v; want succeeded", a, err)
	}
	next := mustSubmit(t, s, SubmitRequest{Type: "b"})
	r := <-done
	if r.err != nil || len(r.tasks) != 1 || r.tasks[0].ID != next[0].ID {
		t.Fatalf("parked claim got %v, %v; want task b", r.tasks, r.err)
	}
	if r.carried == nil || len(r.carried.Lost) != 0 {
		t.Fatalf("carried = %+v, want committed with nothing lost", r.carried)
	}
	if m := st.completeClaims.Load(); m != 1 {
		t.Fatalf("%d TaskCompleteClaim calls, want 1 (later passes claim only)", m)
	}
}

// A claimer that goes away before any pass took its claim gets no outcome
// for its completions (nil): nothing committed them, and the caller must
// (stepQueue's nil Claimer would panic on ClaimCompleteMany).
func TestClaimCompleteGoneBeforeItsPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newStepQueue()
		d := NewClaimDispatcher(q, time.Hour, prometheus.NewGauge(prometheus.GaugeOpts{Name: "claim_waiters"}), slog.New(slog.DiscardHandler))
		startDispatcher(t, d)
		// A first claim keeps the dispatcher busy.
		first := make(chan error, 1)
		go func() {
			_, err := d.Claim(t.Context(), uuid.New(), 1, 0, nil)
			first <- err
		}()
		<-q.calls
		ctx, cancel := context.WithCancel(t.Context())
		done := claimCompleteAsync(ctx, d, uuid.New(), time.Minute, []store.TaskCompletion{{Lease: core.Lease{TaskID: uuid.New(), Token: uuid.New()}}})
		synctest.Wait()
		cancel()
		r := <-done
		if r.err != nil || len(r.tasks) != 0 || r.carried != nil {
			t.Fatalf("gone claimer got %v, %+v, %v; want nothing and no outcome", r.tasks, r.carried, r.err)
		}
		q.answers <- [][]*core.Task{{}}
		if err := <-first; err != nil {
			t.Fatalf("first claim: %v", err)
		}
	})
}

// claimCompleteResult is what ClaimComplete returned.
type claimCompleteResult struct {
	tasks   []*core.Task
	carried *Carried
	err     error
}

// claimCompleteAsync runs a one-task ClaimComplete for workerID in its own
// goroutine and delivers what it returned.
func claimCompleteAsync(ctx context.Context, d *ClaimDispatcher, workerID uuid.UUID, wait time.Duration, complete []store.TaskCompletion) <-chan claimCompleteResult {
	done := make(chan claimCompleteResult, 1)
	go func() {
		ts, c, err := d.ClaimComplete(ctx, workerID, 1, wait, nil, complete)
		done <- claimCompleteResult{ts, c, err}
	}()
	return done
}
