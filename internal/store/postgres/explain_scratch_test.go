package postgres_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/storetest"
)

func TestScratchExplain(t *testing.T) {
	if os.Getenv("B_EXPLAIN") == "" {
		t.Skip()
	}
	s := openFresh(t, 0)
	ctx := t.Context()
	for start := 0; start < 20000; start += 1000 {
		var tasks []*core.Task
		for i := start; i < start+1000; i++ {
			tasks = append(tasks, storetest.NewTask(storetest.Created(storetest.Base.Add(time.Duration(i)*time.Millisecond)), storetest.Owner(fmt.Sprintf("o%d", i%1000))))
		}
		if _, err := s.TaskInsertMany(ctx, &store.TaskInsertManyParams{Now: storetest.Base, Tasks: tasks}); err != nil {
			t.Fatal(err)
		}
	}
	w := storetest.InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	s.Pool().Exec(ctx, "VACUUM ANALYZE tasks")
	now := storetest.Base.Add(time.Hour)
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		got, err := s.TaskClaim(ctx, &store.TaskClaimParams{Now: now, WorkerID: w.ID, Pool: "default", Max: 100, LeaseDuration: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		items := make([]store.TaskCompletion, len(got))
		for j, task := range got {
			items[j] = store.TaskCompletion{Lease: core.Lease{TaskID: task.ID, Token: *task.LeaseToken}, Result: []byte(`{"ok":true}`)}
		}
		if _, err := s.TaskCompleteMany(ctx, &store.TaskCompleteManyParams{Now: now, WorkerID: w.ID, Items: items}); err != nil {
			t.Fatal(err)
		}
		t.Logf("claim %v complete %v", t1.Sub(t0), time.Since(t1))
	}
	for _, q := range []string{
		`EXPLAIN (ANALYZE, BUFFERS, WAL) WITH w AS (SELECT id FROM workers WHERE id = '` + w.ID.String() + `' AND state IN ('booting','ready') FOR SHARE), picked AS (SELECT id FROM tasks WHERE state='queued' AND pool='default' AND run_after <= now() AND deps_pending=0 AND EXISTS (SELECT 1 FROM w) ORDER BY priority DESC, created_at, id LIMIT 100 FOR UPDATE SKIP LOCKED) UPDATE tasks t SET state='running', attempt=t.attempt+1, worker_id='` + w.ID.String() + `', lease_token=gen_random_uuid(), lease_expires_at=now(), started_at=now(), updated_at=now() FROM picked WHERE t.id=picked.id RETURNING t.*`,
	} {
		rows, err := s.Pool().Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for rows.Next() {
			var l string
			rows.Scan(&l)
			lines = append(lines, l)
		}
		t.Log("\n" + strings.Join(lines, "\n"))
	}
}
