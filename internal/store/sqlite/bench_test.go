package sqlite_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/storetest"
)

// BenchmarkClaimComplete measures the worker hot path: claim a batch of 100
// tasks, then complete the batch in one TaskComplete. One op is one
// batch; tasks/s is the figure `drover bench queue` is compared with.
func BenchmarkClaimComplete(b *testing.B) {
	for _, bc := range []struct {
		name       string
		ownerLimit int
		owners     int
	}{
		{"Unlimited", 0, 1},
		{"OwnerLimit5x100Owners", 5, 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := openTemp(b)
			if _, err := s.Migrate(b.Context()); err != nil {
				b.Fatalf("Migrate: %v", err)
			}
			w := storetest.InsertWorker(b, s, core.DefaultPool, core.WorkerReady)
			const batch = 100
			seq := 0
			refill := func() {
				tasks := make([]*core.Task, 0, 5000)
				for range 5000 {
					seq++
					at := storetest.At(time.Duration(seq) * time.Microsecond)
					tasks = append(tasks, storetest.NewTask(storetest.Created(at), storetest.Owner(fmt.Sprintf("o%d", seq%bc.owners))))
				}
				storetest.InsertTasks(b, s, tasks...)
			}
			refill()
			now := storetest.At(time.Hour)
			items := make([]store.TaskCompletion, 0, batch)
			result := json.RawMessage(`{"ok":true}`)
			claimed := 0
			b.ResetTimer()
			for b.Loop() {
				got, err := storetest.ClaimOne(b.Context(), s, &store.TaskClaimParams{
					Now: now, WorkerID: w.ID, Pool: core.DefaultPool, Max: batch,
					LeaseDuration: time.Minute, OwnerLimit: bc.ownerLimit,
				})
				if err != nil {
					b.Fatalf("TaskClaim: %v", err)
				}
				if len(got) < batch {
					b.StopTimer()
					refill()
					b.StartTimer()
				}
				items = items[:0]
				for _, t := range got {
					items = append(items, store.TaskCompletion{Lease: core.Lease{TaskID: t.ID, Token: *t.LeaseToken}, Result: result})
				}
				lost, err := storetest.CompleteOne(b.Context(), s, &store.TaskCompleteParams{Now: now, WorkerID: w.ID, Items: items})
				if err != nil || len(lost) != 0 {
					b.Fatalf("TaskCompleteMany: lost %d, %v", len(lost), err)
				}
				claimed += len(got)
			}
			b.ReportMetric(float64(claimed)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}

// BenchmarkTaskInsertMany measures submitting batches of 1000 tasks.
func BenchmarkTaskInsertMany(b *testing.B) {
	s := openTemp(b)
	if _, err := s.Migrate(b.Context()); err != nil {
		b.Fatalf("Migrate: %v", err)
	}
	const batch = 1000
	seq := 0
	inserted := 0
	for b.Loop() {
		tasks := make([]*core.Task, 0, batch)
		for range batch {
			seq++
			tasks = append(tasks, storetest.NewTask(storetest.Created(storetest.At(time.Duration(seq)*time.Microsecond))))
		}
		storetest.InsertTasks(b, s, tasks...)
		inserted += batch
	}
	b.ReportMetric(float64(inserted)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkWorkerActivity compares the control loop's per-tick read of a
// 10,000-worker fleet: WorkerActivity against a Brief WorkerList.
func BenchmarkWorkerActivity(b *testing.B) {
	s := openTemp(b)
	if _, err := s.Migrate(b.Context()); err != nil {
		b.Fatalf("Migrate: %v", err)
	}
	storetest.BenchWorkerActivity(b, s, 10000)
}
