package sqlite_test

import (
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/storetest"
)

// TestReadsDoNotWaitForTheWriter holds the single writer connection in an
// open write transaction and checks that the control loop's reads still
// answer, from the last committed state: they run on the read-only pool.
func TestReadsDoNotWaitForTheWriter(t *testing.T) {
	s := openTemp(t)
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	storetest.InsertN(t, s, 3)
	storetest.InsertWorker(t, s, core.DefaultPool, core.WorkerReady)

	conn, err := s.DB().Conn(t.Context())
	if err != nil {
		t.Fatalf("take the writer connection: %v", err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatalf("begin write transaction: %v", err)
	}
	defer func() { _ = tx.Rollback() }()
	// Uncommitted: readers must not see it.
	if _, err := tx.ExecContext(t.Context(), `UPDATE tasks SET pool = 'hidden'`); err != nil {
		t.Fatalf("update under the open transaction: %v", err)
	}

	d, err := s.TaskDemand(t.Context(), &store.TaskDemandParams{Now: storetest.At(time.Hour), Cap: 100})
	if err != nil {
		t.Fatalf("TaskDemand while the writer is busy: %v", err)
	}
	if got := d[core.DefaultPool]; got != (store.PoolDemand{Queued: 3, Claimable: 3}) {
		t.Fatalf("demand = %+v, want the committed 3 queued and claimable", got)
	}
	ws, err := s.WorkerList(t.Context(), &store.WorkerListParams{LiveOnly: true, Brief: true})
	if err != nil {
		t.Fatalf("WorkerList while the writer is busy: %v", err)
	}
	if len(ws) != 1 || ws[0].State != core.WorkerReady {
		t.Fatalf("WorkerList = %d workers, want the 1 ready worker", len(ws))
	}
	tasks, err := s.TaskList(t.Context(), &store.TaskListParams{})
	if err != nil {
		t.Fatalf("TaskList while the writer is busy: %v", err)
	}
	if len(tasks) != 3 || tasks[0].Pool != core.DefaultPool {
		t.Fatalf("TaskList = %d tasks, want the 3 committed ones in %q", len(tasks), core.DefaultPool)
	}
}
