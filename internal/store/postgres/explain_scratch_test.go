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
	for start := 0; start < 5000; start += 1000 {
		var tasks []*core.Task
		for i := start; i < start+1000; i++ {
			tasks = append(tasks, storetest.NewTask(storetest.Created(storetest.Base.Add(time.Duration(i)*time.Millisecond)), storetest.Owner(fmt.Sprintf("o%d", i%1000))))
		}
		if _, err := s.TaskInsertMany(ctx, &store.TaskInsertManyParams{Now: storetest.Base, Tasks: tasks}); err != nil {
			t.Fatal(err)
		}
	}
	w := storetest.InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	s.Pool().Exec(ctx, "VACUUM ANALYZE")
	now := storetest.Base.Add(time.Hour)
	var got []*core.Task
	for i := 0; i < 3000; i++ {
		g, err := s.TaskClaim(ctx, &store.TaskClaimParams{Now: now, WorkerID: w.ID, Pool: "default", Max: 1, LeaseDuration: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		got = g
	}
	ids, toks, res := []string{}, []string{}, []string{}
	for _, task := range got {
		ids = append(ids, task.ID.String())
		toks = append(toks, task.LeaseToken.String())
		res = append(res, `{"ok":true}`)
	}
	q := os.Getenv("B_SQL")
	var args []any
	switch os.Getenv("B_ARGS") {
	case "complete":
		args = []any{ids, toks, res, now}
	case "claim":
		args = []any{w.ID, "default", now, 100, now}
	}
	rows, err := s.Pool().Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+q, args...)
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
