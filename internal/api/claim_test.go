package api

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// stepQueue is a Queue whose Claim blocks until the test answers it, so the
// dispatcher's interleavings can be driven step by step. Only Claim and
// Notify are used by the dispatcher; the embedded nil Queue panics on
// anything else.
type stepQueue struct {
	Queue
	calls   chan uuid.UUID
	answers chan []*core.Task
	notify  chan struct{}
}

func (q *stepQueue) Claim(ctx context.Context, id uuid.UUID, max int) ([]*core.Task, error) {
	q.calls <- id
	return <-q.answers, nil
}

func (q *stepQueue) Notify() <-chan struct{} { return q.notify }

// A claimer whose wait ends while the dispatcher is claiming for it must be
// answered when that claim comes back empty, not parked again past its
// deadline.
func TestDispatcherAnswersAbandonedClaimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &stepQueue{calls: make(chan uuid.UUID), answers: make(chan []*core.Task), notify: make(chan struct{})}
		m := newMetrics(prometheus.NewRegistry())
		d := newClaimDispatcher(q, m, time.Hour, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); d.run(ctx) }()

		worker := uuid.New()
		type result struct {
			tasks []*core.Task
			err   error
		}
		got := make(chan result, 1)
		go func() {
			tasks, err := d.wait(t.Context(), worker, "default", 1, time.Second, nil, nil)
			got <- result{tasks, err}
		}()
		synctest.Wait()
		d.wake()
		if id := <-q.calls; id != worker {
			t.Fatalf("claimed for %s, want %s", id, worker)
		}
		// The claim is in flight; the claimer's second passes.
		time.Sleep(2 * time.Second) // fake time inside the bubble
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("claimer returned before the in-flight claim answered")
		default:
		}
		q.answers <- nil // nothing claimable
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
		cancel()
		<-done
	})
}

// A claim the dispatcher succeeds for is delivered even though the
// claimer's wait ran out meanwhile: tasks are never granted to nobody.
func TestDispatcherDeliversTasksToLateClaimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &stepQueue{calls: make(chan uuid.UUID), answers: make(chan []*core.Task), notify: make(chan struct{})}
		d := newClaimDispatcher(q, newMetrics(prometheus.NewRegistry()), time.Hour, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); d.run(ctx) }()
		got := make(chan []*core.Task, 1)
		go func() {
			tasks, _ := d.wait(t.Context(), uuid.New(), "default", 1, time.Second, nil, nil)
			got <- tasks
		}()
		synctest.Wait()
		d.wake()
		<-q.calls
		time.Sleep(2 * time.Second)
		task := &core.Task{ID: uuid.New()}
		q.answers <- []*core.Task{task}
		if tasks := <-got; len(tasks) != 1 || tasks[0].ID != task.ID {
			t.Fatalf("late claimer got %v", tasks)
		}
		cancel()
		<-done
	})
}
