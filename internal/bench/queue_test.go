package bench

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/sqlite"
)

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "bench.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

func checkResult(t *testing.T, res *QueueResult, cfg QueueConfig) {
	t.Helper()
	if res.Tasks != cfg.Tasks || res.Claimers != cfg.Claimers || res.Batch != cfg.Batch {
		t.Fatalf("result echoes %d/%d/%d", res.Tasks, res.Claimers, res.Batch)
	}
	if res.ClaimCalls-res.EmptyClaims < (cfg.Tasks+cfg.Batch-1)/cfg.Batch {
		t.Fatalf("%d non-empty claims cannot cover %d tasks in batches of %d", res.ClaimCalls-res.EmptyClaims, cfg.Tasks, cfg.Batch)
	}
	if res.Elapsed <= 0 || res.TasksPerSec <= 0 || res.ClaimP50 <= 0 || res.ClaimP99 < res.ClaimP50 || res.CompleteP99 < res.CompleteP50 {
		t.Fatalf("implausible measurements: %+v", res)
	}
}

func TestRunQueueSQLite(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	cfg := QueueConfig{Tasks: 250, Claimers: 4, Batch: 7, Owners: 3}
	res, err := RunQueue(t.Context(), st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, cfg)
	counts, err := st.TaskCountByState(t.Context())
	if err != nil || counts[core.TaskSucceeded] != 250 || counts[core.TaskQueued]+counts[core.TaskRunning] != 0 {
		t.Fatalf("counts %v (err %v)", counts, err)
	}
	// A second run on the same database works in its own pool.
	res, err = RunQueue(t.Context(), st, QueueConfig{Tasks: 20, Claimers: 2, Batch: 1, OwnerLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tasks != 20 {
		t.Fatalf("second run worked %d tasks", res.Tasks)
	}
}

func TestRunQueueVerifiesOutcome(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	// Verification must fail when a task it did not work is left queued in
	// its pool: insert one extra task into the pool before verifying.
	cfg := QueueConfig{Tasks: 5, Claimers: 1, Pool: "bench-fixed", Clock: core.SystemClock{}, Now: time.Now}
	if _, err := RunQueue(t.Context(), st, cfg); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if _, err := st.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: now, Tasks: []*core.Task{{
		ID: [16]byte{1}, Type: "x", Params: []byte(`{}`), Owner: "o", Pool: "bench-fixed", MaxAttempts: 1, MaxLost: 1,
		Timeout: time.Hour, State: core.TaskQueued, CreatedAt: now, RunAfter: now.Add(time.Hour), UpdatedAt: now,
	}}}); err != nil {
		t.Fatal(err)
	}
	_, err := RunQueue(t.Context(), st, QueueConfig{Tasks: 3, Claimers: 1, Pool: "bench-fixed"})
	if err == nil {
		t.Fatal("RunQueue verified a pool that still holds a queued task")
	}
}

func TestRunQueuePostgres(t *testing.T) {
	st := pgtest.Open(t, 0)
	cfg := QueueConfig{Tasks: 300, Claimers: 8, Batch: 5, Owners: 4}
	res, err := RunQueue(t.Context(), st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, cfg)
}

// --via queue works through the claim dispatcher and the completions'
// group commit, on both backends; 16 claimers of 10 make completion
// batches of more than 64 items (PostgreSQL's per-row locking statement).
func TestRunQueueViaQueue(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(*testing.T) store.Store{
		"SQLite":     openSQLite,
		"PostgreSQL": func(t *testing.T) store.Store { return pgtest.Open(t, 0) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			cfg := QueueConfig{Tasks: 600, Claimers: 16, Batch: 10, Via: "queue"}
			res, err := RunQueue(t.Context(), st, cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res, cfg)
			if res.Via != "queue" {
				t.Fatalf("result says via %q", res.Via)
			}
		})
	}
	if _, err := RunQueue(t.Context(), openSQLite(t), QueueConfig{Tasks: 1, Via: "http"}); err == nil {
		t.Fatal("RunQueue accepted via http")
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(100-i) * time.Millisecond
	}
	if p := percentile(ds, 50); p != 50*time.Millisecond {
		t.Errorf("p50 = %s", p)
	}
	if p := percentile(ds, 99); p != 99*time.Millisecond {
		t.Errorf("p99 = %s", p)
	}
	if p := percentile([]time.Duration{7}, 99); p != 7 {
		t.Errorf("p99 of one = %s", p)
	}
	if p := percentile(nil, 50); p != 0 {
		t.Errorf("p50 of none = %s", p)
	}
}
