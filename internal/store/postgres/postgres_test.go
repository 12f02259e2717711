package postgres_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/store/postgres/pgtest"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres"
	"github.com/droverhq/drover/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	pgtest.URL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return pgtest.Open(t, 8) })
}

func TestOpenBadURLDoesNotLeakPassword(t *testing.T) {
	_, err := postgres.Open(t.Context(), "postgres://u:s3cr3t-pass@%zz/db")
	if err == nil {
		t.Fatal("Open accepted a malformed URL")
	}
	if strings.Contains(err.Error(), "s3cr3t-pass") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	base := pgtest.URL(t)
	schema := pgtest.NewSchema(t, base)
	u := pgtest.WithParams(t, base, map[string]string{"search_path": schema, "pool_max_conns": "2"})
	const n = 4
	stores := make([]*postgres.Store, n)
	for i := range stores {
		s, err := postgres.Open(t.Context(), u)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		stores[i] = s
	}
	type result struct {
		applied []string
		err     error
	}
	results := make(chan result, n)
	for _, s := range stores {
		go func() {
			a, err := s.Migrate(t.Context())
			results <- result{a, err}
		}()
	}
	total := 0
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatalf("concurrent migrate: %v", r.err)
		}
		total += len(r.applied)
	}
	// Every migration is applied exactly once across the replicas.
	again, err := stores[0].Migrate(t.Context())
	if err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if len(again) != 0 {
		t.Fatalf("second migrate applied %v", again)
	}
	var recorded int
	if err := stores[0].Pool().QueryRow(t.Context(), "SELECT count(*) FROM schema_migrations").Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	if total != recorded {
		t.Fatalf("replicas applied %d migrations in total, schema_migrations has %d", total, recorded)
	}
}

// TestClaimSerialisesWithDrain checks that a claim waits for a concurrent
// change of the worker row (the drain) and then sees the new state: the
// worker row is locked FOR SHARE inside the claim statement.
func TestClaimSerialisesWithDrain(t *testing.T) {
	for _, limit := range []int{0, 5} {
		t.Run("OwnerLimit"+strconv.Itoa(limit), func(t *testing.T) { testClaimSerialisesWithDrain(t, limit) })
	}
}

func testClaimSerialisesWithDrain(t *testing.T, ownerLimit int) {
	s := pgtest.Open(t, 4)
	ctx := t.Context()
	w := storetest.InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	task := storetest.InsertTasks(t, s, storetest.NewTask())[0]

	// A drain in progress: the worker row is updated but not committed.
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "UPDATE workers SET state = 'draining' WHERE id = $1", w.ID); err != nil {
		t.Fatal(err)
	}
	var backendPID int
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backendPID); err != nil {
		t.Fatal(err)
	}

	type result struct {
		tasks []*core.Task
		err   error
	}
	done := make(chan result, 1)
	go func() {
		got, err := storetest.ClaimOne(ctx, s, &store.TaskClaimParams{
			Now: storetest.At(time.Minute), WorkerID: w.ID, Pool: core.DefaultPool, Max: 1,
			LeaseDuration: time.Minute, OwnerLimit: ownerLimit,
		})
		done <- result{got, err}
	}()

	// Wait until the claim is blocked behind the drain's row lock.
	for blocked := false; !blocked; {
		select {
		case r := <-done:
			t.Fatalf("claim finished while the drain was uncommitted: %d tasks, err %v", len(r.tasks), r.err)
		default:
		}
		err := s.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND $1 = ANY(pg_blocking_pids(pid)))`, backendPID).Scan(&blocked)
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("claim: %v", r.err)
	}
	if len(r.tasks) != 0 {
		t.Fatalf("claim after the drain committed got %d tasks, want 0", len(r.tasks))
	}
	got, err := s.TaskGet(ctx, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != core.TaskQueued {
		t.Fatalf("task state = %s, want queued", got.State)
	}
}

// TestPruneRemovesDependencyEdges checks that pruned tasks take their
// task_deps rows with them (in both directions).
func TestPruneRemovesDependencyEdges(t *testing.T) {
	s := pgtest.Open(t, 4)
	ctx := t.Context()
	w := storetest.InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	a := storetest.NewTask()
	b := storetest.NewTask(storetest.DependsOn(a.ID))
	c := storetest.NewTask(storetest.DependsOn(b.ID), storetest.Created(storetest.At(time.Second)))
	storetest.InsertTasks(t, s, a, b, c)
	for _, want := range []*core.Task{a, b} {
		got := storetest.Claim(t, s, w, storetest.At(time.Minute), 1, 0)
		if len(got) != 1 || got[0].ID != want.ID {
			t.Fatalf("claimed %v, want %s", got, want.ID)
		}
		storetest.Complete(t, s, w, storetest.At(time.Minute), got[0])
	}
	n, err := s.Prune(ctx, storetest.At(time.Hour))
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if n != 2 {
		t.Fatalf("Prune deleted %d rows, want 2 (a and b)", n)
	}
	var edges int
	if err := s.Pool().QueryRow(ctx, "SELECT count(*) FROM task_deps").Scan(&edges); err != nil {
		t.Fatal(err)
	}
	if edges != 0 {
		t.Fatalf("%d task_deps rows left, want 0", edges)
	}
	got, err := s.TaskGet(ctx, c.ID)
	if err != nil {
		t.Fatalf("TaskGet(c): %v", err)
	}
	if got.State != core.TaskQueued || got.DepsPending != 0 {
		t.Fatalf("c: state %s deps_pending %d, want queued and 0", got.State, got.DepsPending)
	}
}
