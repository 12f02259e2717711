package postgres_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/store/postgres/pgtest"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/google/uuid"
)

// BenchmarkClaimComplete measures queue throughput: b.N queued tasks are
// worked off by 64 claimers (one worker row each) that claim up to batch
// tasks at a time and complete them with one TaskComplete. Insertion is
// not timed. The tasks/s metric is the figure to compare; run it with a
// fixed count, for example
//
//	go test -run '^$' -bench ClaimComplete -benchtime 20000x ./internal/store/postgres/
//
// DROVER_BENCH_POOL=n overrides the connection pool size (default
// DefaultMaxConns).
func BenchmarkClaimComplete(b *testing.B) {
	for _, bc := range []struct {
		batch, ownerLimit int
	}{{100, 0}, {1, 0}, {100, 5}, {1, 5}} {
		b.Run(fmt.Sprintf("claimers=64/batch=%d/owner_limit=%d", bc.batch, bc.ownerLimit), func(b *testing.B) {
			benchClaimComplete(b, 64, bc.batch, bc.ownerLimit)
		})
	}
}

func benchClaimComplete(b *testing.B, claimers, batch, ownerLimit int) {
	conns, _ := strconv.Atoi(os.Getenv("DROVER_BENCH_POOL"))
	s := pgtest.Open(b, conns)
	ctx := b.Context()
	now := storetest.Base.Add(time.Hour)

	// Tasks are spread over 1,000 owners, so an owner limit of 5 leaves
	// room for every claimer. Ids are time-ordered (UUIDv7) like the ones
	// package queue assigns, which keeps primary-key inserts local.
	n := b.N
	for start := 0; start < n; start += 1000 {
		tasks := make([]*core.Task, 0, min(1000, n-start))
		for i := start; i < min(start+1000, n); i++ {
			tasks = append(tasks, storetest.NewTask(
				storetest.Created(storetest.Base.Add(time.Duration(i)*time.Millisecond)),
				storetest.Owner(fmt.Sprintf("owner-%d", i%1000)),
				func(t *core.Task) { t.ID = uuid.Must(uuid.NewV7()) }, // as package queue does
			))
		}
		if _, err := s.TaskInsertMany(ctx, &store.TaskInsertManyParams{Now: storetest.Base, Tasks: tasks}); err != nil {
			b.Fatalf("insert: %v", err)
		}
	}
	workers := make([]*core.Worker, claimers)
	for i := range workers {
		workers[i] = storetest.InsertWorker(b, s, core.DefaultPool, core.WorkerReady)
	}

	var (
		done atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, claimers)
	)
	result := json.RawMessage(`{"ok":true}`)
	b.ResetTimer()
	start := time.Now()
	for i := range claimers {
		wg.Go(func() {
			w := workers[i]
			for {
				got, err := storetest.ClaimOne(ctx, s, &store.TaskClaimParams{
					Now: now, WorkerID: w.ID, Pool: core.DefaultPool, Max: batch,
					LeaseDuration: time.Minute, OwnerLimit: ownerLimit,
				})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				items := make([]store.TaskCompletion, len(got))
				for j, t := range got {
					items[j] = store.TaskCompletion{Lease: core.Lease{TaskID: t.ID, Token: *t.LeaseToken}, Result: result}
				}
				lost, err := storetest.CompleteOne(ctx, s, &store.TaskCompleteParams{Now: now, WorkerID: w.ID, Items: items})
				if err != nil {
					errs <- err
					return
				}
				if len(lost) != 0 {
					errs <- fmt.Errorf("%d leases lost", len(lost))
					return
				}
				done.Add(int64(len(got)))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatalf("claimer: %v", err)
	}
	if int(done.Load()) != n {
		b.Fatalf("completed %d tasks, want %d", done.Load(), n)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "tasks/s")
}

// BenchmarkTaskInsertMany measures bulk submit through the store: batches
// of 1,000 tasks (UUIDv7 ids, as package queue assigns), one call each.
func BenchmarkTaskInsertMany(b *testing.B) {
	s := pgtest.Open(b, 0)
	const batch = 1000
	seq, inserted := 0, 0
	for b.Loop() {
		tasks := make([]*core.Task, 0, batch)
		for range batch {
			seq++
			tasks = append(tasks, storetest.NewTask(
				storetest.Created(storetest.At(time.Duration(seq)*time.Microsecond)),
				func(t *core.Task) { t.ID = uuid.Must(uuid.NewV7()) },
			))
		}
		if _, err := s.TaskInsertMany(b.Context(), &store.TaskInsertManyParams{Now: storetest.Base, Tasks: tasks}); err != nil {
			b.Fatalf("TaskInsertMany: %v", err)
		}
		inserted += batch
	}
	b.ReportMetric(float64(inserted)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkWorkerActivity compares the control loop's per-tick read of a
// 10,000-worker fleet: WorkerActivity against a Brief WorkerList.
func BenchmarkWorkerActivity(b *testing.B) {
	storetest.BenchWorkerActivity(b, pgtest.Open(b, 0), 10000)
}
