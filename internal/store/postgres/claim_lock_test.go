package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/jackc/pgx/v5"
)

// drainInProgress updates w to draining in a transaction it leaves open
// (rolled back at the end of the test) and returns that transaction's
// backend pid: the worker row stays locked FOR UPDATE until the caller
// commits tx.
func drainInProgress(t *testing.T, s *postgres.Store, w *core.Worker) (pgx.Tx, int) {
	t.Helper()
	ctx := t.Context()
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
	if _, err := tx.Exec(ctx, "UPDATE workers SET state = 'draining' WHERE id = $1", w.ID); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return tx, pid
}

type claimResult struct {
	tasks [][]*core.Task
	err   error
}

// claimAsync runs TaskClaim for workers (one claim of one task each, no
// owner limit) in a goroutine.
func claimAsync(t *testing.T, s *postgres.Store, workers ...*core.Worker) <-chan claimResult {
	params := make([]*store.TaskClaimParams, len(workers))
	for i, w := range workers {
		params[i] = &store.TaskClaimParams{
			Now: storetest.At(time.Minute), WorkerID: w.ID, Pool: core.DefaultPool, Max: 1, LeaseDuration: time.Minute,
		}
	}
	done := make(chan claimResult, 1)
	go func() {
		got, err := s.TaskClaim(t.Context(), params)
		done <- claimResult{got, err}
	}()
	return done
}

// waitBlockedOrDone polls until the claim finishes (returned) or waits for
// a lock held by the backend pid (nil returned).
func waitBlockedOrDone(t *testing.T, s *postgres.Store, done <-chan claimResult, pid int) *claimResult {
	t.Helper()
	for {
		select {
		case r := <-done:
			return &r
		default:
		}
		var blocked bool
		err := s.Pool().QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND $1 = ANY(pg_blocking_pids(pid)))`, pid).Scan(&blocked)
		if err != nil {
			t.Fatal(err)
		}
		if blocked {
			return nil
		}
	}
}

// TestEmptyClaimLocksNoWorker checks that a claim that finds nothing to
// claim locks no worker row (it writes nothing, so its commit flushes no
// WAL): it answers nothing at once even while a drain holds the worker's
// row, alone (one statement per claim) or in a batch.
func TestEmptyClaimLocksNoWorker(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run("claims"+string(rune('0'+n)), func(t *testing.T) {
			s := pgtest.Open(t, 4)
			var ws []*core.Worker
			for range n {
				ws = append(ws, storetest.InsertWorker(t, s, core.DefaultPool, core.WorkerReady))
			}
			// A task of another pool: the queue is not empty, the pool is.
			storetest.InsertTasks(t, s, storetest.NewTask(func(tk *core.Task) { tk.Pool = "elsewhere" }))
			_, pid := drainInProgress(t, s, ws[0])
			r := waitBlockedOrDone(t, s, claimAsync(t, s, ws...), pid)
			if r == nil {
				t.Fatal("a claim with nothing to claim waited for the worker's row lock")
			}
			if r.err != nil {
				t.Fatalf("claim: %v", r.err)
			}
			for i, ts := range r.tasks {
				if len(ts) != 0 {
					t.Fatalf("claim %d got %d tasks from an empty pool", i, len(ts))
				}
			}
		})
	}
}

// TestBatchClaimSkipsWorkerDrainedWhileLocking checks that a batch claim
// still serialises with a drain of a worker it would grant to: it waits
// for the drain, then hands the task to the next worker that may claim.
func TestBatchClaimSkipsWorkerDrainedWhileLocking(t *testing.T) {
	s := pgtest.Open(t, 4)
	ctx := t.Context()
	w1 := storetest.InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	w2 := storetest.InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	task := storetest.InsertTasks(t, s, storetest.NewTask())[0]
	tx, pid := drainInProgress(t, s, w1)
	done := claimAsync(t, s, w1, w2)
	if r := waitBlockedOrDone(t, s, done, pid); r != nil {
		t.Fatalf("batch claim finished while the drain of its first worker was uncommitted: %+v", r)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("claim: %v", r.err)
	}
	if len(r.tasks[0]) != 0 {
		t.Fatalf("drained worker got %d tasks, want 0", len(r.tasks[0]))
	}
	if len(r.tasks[1]) != 1 || r.tasks[1][0].ID != task.ID {
		t.Fatalf("second worker got %+v, want task %s", r.tasks[1], task.ID)
	}
	got, err := s.TaskGet(ctx, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != core.TaskRunning || got.WorkerID == nil || *got.WorkerID != w2.ID {
		t.Fatalf("task is %s on %v, want running on %s", got.State, got.WorkerID, w2.ID)
	}
}
