package queue

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/google/uuid"
)

// gatedStore is the real store whose first single-worker completion waits
// for the test, and which counts batch completions, so a group commit can
// be observed.
type gatedStore struct {
	store.Store
	gate, entered chan struct{}
	first         atomic.Bool
	batches       atomic.Int32
	batchItems    atomic.Int32
	claimBatches  atomic.Int32
}

func (g *gatedStore) TaskComplete(ctx context.Context, p []*store.TaskCompleteParams) ([][]core.Lease, error) {
	if g.first.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.gate
		return g.Store.TaskComplete(ctx, p)
	}
	g.batches.Add(1)
	g.batchItems.Add(int32(len(p)))
	return g.Store.TaskComplete(ctx, p)
}

func (g *gatedStore) TaskClaim(ctx context.Context, p []*store.TaskClaimParams) ([][]*core.Task, error) {
	g.claimBatches.Add(1)
	return g.Store.TaskClaim(ctx, p)
}

// Completions that arrive while a commit runs are committed together by
// the next one, and each caller gets its own outcome.
func TestCompleteGroupCommit(t *testing.T) {
	t.Parallel()
	g := &gatedStore{Store: openSQLite(t), gate: make(chan struct{}), entered: make(chan struct{})}
	clock := core.NewFakeClock(storetest.Base)
	s := New(g, clock, Config{}, nil)
	const n = 6
	var workers []*core.Worker
	for range n + 1 {
		workers = append(workers, storetest.InsertWorker(t, g, core.DefaultPool, core.WorkerReady))
	}
	reqs := make([]SubmitRequest, n+1)
	for i := range reqs {
		reqs[i] = SubmitRequest{Type: "a"}
	}
	mustSubmit(t, s, reqs...)
	claimReqs := make([]ClaimRequest, n+1)
	for i, w := range workers {
		claimReqs[i] = ClaimRequest{WorkerID: w.ID, Max: 1}
	}
	claimed, err := s.ClaimMany(t.Context(), claimReqs)
	if err != nil {
		t.Fatalf("ClaimMany: %v", err)
	}
	if got := g.claimBatches.Load(); got != 1 {
		t.Fatalf("ClaimMany used %d TaskClaim calls, want 1", got)
	}
	seen := map[uuid.UUID]bool{}
	for i, ts := range claimed {
		if len(ts) != 1 || seen[ts[0].ID] {
			t.Fatalf("worker %d claimed %v", i, ts)
		}
		seen[ts[0].ID] = true
	}

	// The first completion starts a flush that blocks in the store.
	firstDone := make(chan error, 1)
	go func() { firstDone <- s.Complete(t.Context(), workers[0].ID, leaseOf(claimed[0][0]), nil) }()
	<-g.entered
	// n more arrive meanwhile; one of them presents a stale token.
	errs := make(chan error, n)
	stale := core.Lease{TaskID: claimed[n][0].ID, Token: uuid.New()}
	for i := 1; i <= n; i++ {
		lease := leaseOf(claimed[i][0])
		if i == n {
			lease = stale
		}
		go func() { errs <- s.Complete(t.Context(), workers[i].ID, lease, nil) }()
	}
	for {
		s.cmu.Lock()
		pending := len(s.cpending)
		s.cmu.Unlock()
		if pending == n {
			break
		}
		runtime.Gosched()
	}
	close(g.gate)
	if err := <-firstDone; err != nil {
		t.Fatalf("first Complete: %v", err)
	}
	var lost, ok int
	for range n {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case errors.Is(err, core.ErrLeaseLost):
			lost++
		default:
			t.Fatalf("Complete: %v", err)
		}
	}
	if ok != n-1 || lost != 1 {
		t.Fatalf("%d completed and %d lost, want %d and 1", ok, lost, n-1)
	}
	if b, items := g.batches.Load(), g.batchItems.Load(); b != 1 || items != n {
		t.Fatalf("%d batched TaskComplete calls with %d items, want 1 with %d", b, items, n)
	}
	task, err := s.Get(t.Context(), claimed[n][0].ID)
	if err != nil || task.State != core.TaskRunning {
		t.Fatalf("stale completion changed the task: %v %v", task, err)
	}
	if got := taskCount(t, g); got != n+1 {
		t.Fatalf("%d tasks, want %d", got, n+1)
	}
}

// Signal wakes long-poll claimers: it closes the current Notify channel.
func TestSignalClosesNotify(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{})
	ch := s.Notify()
	s.Signal()
	select {
	case <-ch:
	default:
		t.Fatal("Signal did not close the Notify channel")
	}
	if s.Notify() == ch {
		t.Fatal("Notify did not start a new generation")
	}
}
