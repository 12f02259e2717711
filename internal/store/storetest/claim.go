package storetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

func claimCases() []suiteCase {
	return []suiteCase{
		{name: "TaskClaimSetsLease", fn: testTaskClaimSetsLease},
		{name: "TaskClaimPriorityThenFIFO", fn: testTaskClaimPriorityThenFIFO},
		{name: "TaskClaimPoolMatching", fn: testTaskClaimPoolMatching},
		{name: "TaskClaimRunAfter", fn: testTaskClaimRunAfter},
		{name: "TaskClaimBatched", fn: testTaskClaimBatched},
		{name: "TaskClaimInvalidMax", fn: testTaskClaimInvalidMax},
		{name: "TaskClaimRefusedForWorkerState", fn: testTaskClaimRefusedForWorkerState},
		{name: "TaskClaimOwnerLimit", fn: testTaskClaimOwnerLimit},
		{name: "TaskClaimConcurrentExactlyOnce", fn: testTaskClaimConcurrentExactlyOnce},
		{name: "TaskClaimOwnerLimitConcurrent", fn: testTaskClaimOwnerLimitConcurrent},
		{name: "TaskConcurrentLifecycleCompletesOnce", rule: testTaskConcurrentLifecycleCompletesOnce},
		{name: "TaskDemand", fn: testTaskDemand},
		{name: "TaskDemandOwnerLimitBlocked", fn: testTaskDemandOwnerLimitBlocked},
		{name: "TaskDemandCap", fn: testTaskDemandCap},
		{name: "WorkerListBrief", fn: testWorkerListBrief},
	}
}

func testTaskClaimSetsLease(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 3)
	now := At(time.Hour)
	got, err := ClaimOne(t.Context(), s, &store.TaskClaimParams{
		Now: now, WorkerID: w.ID, Pool: core.DefaultPool, Max: 2, LeaseDuration: 25 * time.Second,
	})
	noErr(t, "TaskClaim", err)
	eq(t, "claimed", len(got), 2)
	if *got[0].LeaseToken == *got[1].LeaseToken {
		t.Fatalf("two claimed tasks share lease token %s", *got[0].LeaseToken)
	}
	for _, task := range []*core.Task{got[0], Get(t, s, got[0].ID)} {
		eq(t, "State", task.State, core.TaskRunning)
		eq(t, "Attempt", task.Attempt, 1)
		if task.WorkerID == nil || *task.WorkerID != w.ID {
			t.Fatalf("WorkerID = %v, want %s", task.WorkerID, w.ID)
		}
		if task.LeaseToken == nil || *task.LeaseToken == uuid.Nil {
			t.Fatalf("no lease token")
		}
		eq(t, "LeaseToken", *task.LeaseToken, *got[0].LeaseToken)
		timePtrEq(t, "LeaseExpiresAt", task.LeaseExpiresAt, now.Add(25*time.Second))
		timePtrEq(t, "StartedAt", task.StartedAt, now)
		timeEq(t, "UpdatedAt", task.UpdatedAt, now)
		jsonEq(t, "Params", task.Params, `{"n":1}`)
	}
	eq(t, "queued left", countState(t, s, core.TaskQueued), 1)
}

func testTaskClaimPriorityThenFIFO(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	low := NewTask(Priority(-1), Created(At(0)))
	oldNormal := NewTask(Created(At(1 * time.Second)))
	newNormal := NewTask(Created(At(5 * time.Second)))
	high := NewTask(Priority(10), Created(At(9*time.Second)))
	// Two tasks with equal priority and created_at are ordered by id.
	tie1 := NewTask(Created(At(3 * time.Second)))
	tie2 := NewTask(Created(At(3 * time.Second)))
	if tie2.ID.String() < tie1.ID.String() {
		tie1, tie2 = tie2, tie1
	}
	InsertTasks(t, s, low, newNormal, tie2, high, oldNormal, tie1)
	want := []uuid.UUID{high.ID, oldNormal.ID, tie1.ID, tie2.ID, newNormal.ID, low.ID}
	var got []uuid.UUID
	for range 6 {
		c := Claim(t, s, w, At(time.Minute), 1, 0)
		eq(t, "claimed", len(c), 1)
		got = append(got, c[0].ID)
	}
	orderedIDs(t, "claim order", got, want)

	// A batched claim returns the same order.
	s2 := InsertTasks(t, s, NewTask(Priority(1), Created(At(2*time.Second))), NewTask(Priority(2), Created(At(3*time.Second))), NewTask(Priority(1), Created(At(1*time.Second))))
	c := Claim(t, s, w, At(time.Minute), 10, 0)
	orderedIDs(t, "batched claim order", ids(c), []uuid.UUID{s2[1].ID, s2[2].ID, s2[0].ID})
}

func testTaskClaimPoolMatching(t *testing.T, s store.Store) {
	def := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	big := InsertWorker(t, s, "big", core.WorkerReady)
	tasks := InsertTasks(t, s, NewTask(Pool("big")), NewTask(), NewTask(Pool("small")))
	orderedIDs(t, "default pool claim", ids(Claim(t, s, def, At(time.Second), 10, 0)), []uuid.UUID{tasks[1].ID})
	orderedIDs(t, "big pool claim", ids(Claim(t, s, big, At(time.Second), 10, 0)), []uuid.UUID{tasks[0].ID})
	eq(t, "small pool untouched", Get(t, s, tasks[2].ID).State, core.TaskQueued)
}

func testTaskClaimRunAfter(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	task := InsertTasks(t, s, NewTask(func(task *core.Task) { task.RunAfter = At(time.Minute) }))[0]
	eq(t, "claim before run_after", len(Claim(t, s, w, At(59*time.Second), 1, 0)), 0)
	orderedIDs(t, "claim at run_after", ids(Claim(t, s, w, At(time.Minute), 1, 0)), []uuid.UUID{task.ID})
}

func testTaskClaimBatched(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 25)
	seen := map[uuid.UUID]bool{}
	for _, want := range []int{10, 10, 5, 0} {
		got := Claim(t, s, w, At(time.Hour), 10, 0)
		eq(t, "batch size", len(got), want)
		for _, task := range got {
			if seen[task.ID] {
				t.Fatalf("task %s claimed twice", task.ID)
			}
			seen[task.ID] = true
		}
	}
	eq(t, "running", countState(t, s, core.TaskRunning), 25)
}

func testTaskClaimInvalidMax(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 2)
	for _, max := range []int{0, -1, 1001} {
		_, err := ClaimOne(t.Context(), s, &store.TaskClaimParams{Now: At(time.Hour), WorkerID: w.ID, Pool: w.Pool, Max: max, LeaseDuration: time.Minute})
		invalid(t, fmt.Sprintf("TaskClaim(max=%d)", max), err, "max")
	}
	eq(t, "queued", countState(t, s, core.TaskQueued), 2)
}

func testTaskClaimRefusedForWorkerState(t *testing.T, s store.Store) {
	task := InsertTasks(t, s, NewTask())[0]
	refused := []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning, core.WorkerDraining,
		core.WorkerTerminating, core.WorkerTerminated, core.WorkerFailed}
	try := func(id uuid.UUID, what string) {
		t.Helper()
		got, err := ClaimOne(t.Context(), s, &store.TaskClaimParams{Now: At(time.Minute), WorkerID: id, Pool: core.DefaultPool, Max: 5, LeaseDuration: time.Minute})
		if err != nil && core.ErrorCode(err) == core.EINTERNAL {
			t.Fatalf("%s: unexpected error %v", what, err)
		}
		eq(t, what+": claimed", len(got), 0)
		before := taskSnapshot(Get(t, s, task.ID))
		eq(t, what+": task unchanged", before, taskSnapshot(task))
	}
	for _, st := range refused {
		w := InsertWorker(t, s, core.DefaultPool, st)
		try(w.ID, "worker "+string(st))
	}
	try(uuid.New(), "unknown worker")

	booting := InsertWorker(t, s, core.DefaultPool, core.WorkerBooting)
	eq(t, "booting worker claims", len(Claim(t, s, booting, At(time.Minute), 5, 0)), 1)
}

func testTaskClaimOwnerLimit(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	other := InsertWorker(t, s, "other", core.WorkerReady)
	// alice already runs one task in another pool: it counts against her limit.
	InsertTasks(t, s, NewTask(Owner("alice"), Pool("other")))
	eq(t, "other pool claim", len(Claim(t, s, other, At(time.Second), 1, 3)), 1)

	InsertN(t, s, 6, Owner("alice"), Priority(5))
	bob := InsertN(t, s, 2, Owner("bob"))
	got := Claim(t, s, w, At(time.Minute), 10, 3)
	perOwner := map[string]int{}
	for _, task := range got {
		perOwner[task.Owner]++
	}
	eq(t, "alice claimed", perOwner["alice"], 2)
	eq(t, "bob claimed", perOwner["bob"], 2)
	eq(t, "claim again", len(Claim(t, s, w, At(time.Minute), 10, 3)), 0)

	// Finishing one of alice's tasks frees exactly one slot.
	for _, task := range got {
		if task.Owner == "alice" {
			Complete(t, s, w, At(2*time.Minute), task)
			break
		}
	}
	again := Claim(t, s, w, At(3*time.Minute), 10, 3)
	eq(t, "claimed after completion", len(again), 1)
	eq(t, "owner", again[0].Owner, "alice")
	_ = bob

	// Unlimited (0) ignores the running count.
	eq(t, "unlimited claim", len(Claim(t, s, w, At(4*time.Minute), 10, 0)), 3)
}

func testTaskClaimConcurrentExactlyOnce(t *testing.T, s store.Store) {
	const claimers, total = 32, 2000
	InsertN(t, s, total)
	workers := make([]*core.Worker, claimers)
	for i := range workers {
		workers[i] = InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	}
	var (
		mu     sync.Mutex
		counts = map[uuid.UUID]int{}
		wg     sync.WaitGroup
		errs   = make(chan error, claimers)
	)
	for i := range claimers {
		wg.Go(func() {
			for {
				got, err := ClaimOne(ctxOf(t), s, &store.TaskClaimParams{
					Now: At(time.Hour), WorkerID: workers[i].ID, Pool: core.DefaultPool,
					Max: 1 + i%7, LeaseDuration: time.Minute,
				})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, task := range got {
					counts[task.ID]++
					if task.WorkerID == nil || *task.WorkerID != workers[i].ID {
						errs <- fmt.Errorf("task %s returned to worker %s with worker_id %v", task.ID, workers[i].ID, task.WorkerID)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent claim: %v", err)
	}
	eq(t, "distinct tasks claimed", len(counts), total)
	for id, n := range counts {
		if n != 1 {
			t.Fatalf("task %s claimed %d times", id, n)
		}
	}
	eq(t, "running", countState(t, s, core.TaskRunning), total)
	eq(t, "queued", countState(t, s, core.TaskQueued), 0)
}

func testTaskClaimOwnerLimitConcurrent(t *testing.T, s store.Store) {
	const claimers, limit = 16, 3
	owners := []string{"o1", "o2", "o3", "o4"}
	remaining := map[string]int{}
	for i, o := range owners {
		n := 10 + 5*i
		remaining[o] = n
		InsertN(t, s, n, Owner(o))
	}
	workers := make([]*core.Worker, claimers)
	for i := range workers {
		workers[i] = InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	}
	now := At(time.Hour)
	for round := 0; ; round++ {
		var (
			mu      sync.Mutex
			wg      sync.WaitGroup
			claimed []*core.Task
			errs    = make(chan error, claimers)
		)
		for i := range claimers {
			wg.Go(func() {
				got, err := ClaimOne(ctxOf(t), s, &store.TaskClaimParams{
					Now: now, WorkerID: workers[i].ID, Pool: core.DefaultPool, Max: 2,
					LeaseDuration: time.Minute, OwnerLimit: limit,
				})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				claimed = append(claimed, got...)
				mu.Unlock()
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: claim: %v", round, err)
		}
		if len(claimed) == 0 {
			break
		}
		// Nothing is running besides this round's claims, so the round's
		// per-owner count is the running count: never above the limit, and
		// exactly the limit while the owner has work left (16 claimers × 2
		// exceed 4 owners × 3 slots).
		running := map[string]int{}
		byWorker := map[uuid.UUID][]*core.Task{}
		for _, task := range claimed {
			running[task.Owner]++
			byWorker[*task.WorkerID] = append(byWorker[*task.WorkerID], task)
		}
		for _, o := range owners {
			if running[o] > limit {
				t.Fatalf("round %d: owner %s runs %d tasks, limit %d", round, o, running[o], limit)
			}
			eq(t, fmt.Sprintf("round %d owner %s running", round, o), running[o], min(limit, remaining[o]))
			remaining[o] -= running[o]
		}
		ts, err := s.TaskList(t.Context(), &store.TaskListParams{States: []core.TaskState{core.TaskRunning}, Limit: 1000})
		noErr(t, "TaskList", err)
		eq(t, "running rows", len(ts), len(claimed))
		for _, w := range workers {
			if len(byWorker[w.ID]) > 0 {
				Complete(t, s, w, now, byWorker[w.ID]...)
			}
		}
		now = now.Add(time.Second)
		if round > 100 {
			t.Fatalf("owner-limited claims did not drain the queue")
		}
	}
	for _, o := range owners {
		eq(t, "left for "+o, remaining[o], 0)
	}
	eq(t, "succeeded", countState(t, s, core.TaskSucceeded), 10+15+20+25)
}

func testTaskDemand(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	// default pool: 2 ready, 1 waiting for run_after, 1 waiting for a dep.
	ready := InsertN(t, s, 2)
	later := NewTask(func(task *core.Task) { task.RunAfter = At(time.Hour) })
	dep := NewTask(DependsOn(ready[0].ID))
	InsertTasks(t, s, later, dep)
	// big pool: 3 ready.
	InsertN(t, s, 3, Pool("big"))
	Claim(t, s, w, At(time.Minute), 1, 0) // ready[0] runs

	d, err := s.TaskDemand(t.Context(), &store.TaskDemandParams{Now: At(time.Minute)})
	noErr(t, "TaskDemand", err)
	eq(t, "default", d[core.DefaultPool], store.PoolDemand{Queued: 3, Claimable: 1, Running: 1})
	eq(t, "big", d["big"], store.PoolDemand{Queued: 3, Claimable: 3})
	eq(t, "pool count", len(d), 2)

	d, err = s.TaskDemand(t.Context(), &store.TaskDemandParams{Now: At(2 * time.Hour)})
	noErr(t, "TaskDemand", err)
	eq(t, "default after run_after", d[core.DefaultPool], store.PoolDemand{Queued: 3, Claimable: 2, Running: 1})
}

func testTaskDemandOwnerLimitBlocked(t *testing.T, s store.Store) {
	// The predecessor scaled for 44 tasks no worker was allowed to take.
	const limit = 5
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 49, Owner("heavy"))
	eq(t, "claimed", len(Claim(t, s, w, At(time.Hour), 100, limit)), limit)

	d, err := s.TaskDemand(t.Context(), &store.TaskDemandParams{Now: At(time.Hour), OwnerLimit: limit})
	noErr(t, "TaskDemand", err)
	eq(t, "demand", d[core.DefaultPool], store.PoolDemand{Queued: 44, Claimable: 0, Running: 5, OwnerBlocked: 44})

	// Another owner with 2 running and 10 ready can take 3 more; a third owner
	// with 2 ready can take both. Other pools count against the limit.
	other := InsertWorker(t, s, "other", core.WorkerReady)
	InsertN(t, s, 2, Owner("mid"), Pool("other"))
	eq(t, "mid claimed in other pool", len(Claim(t, s, other, At(time.Hour), 10, limit)), 2)
	InsertN(t, s, 10, Owner("mid"))
	InsertN(t, s, 2, Owner("light"))
	d, err = s.TaskDemand(t.Context(), &store.TaskDemandParams{Now: At(time.Hour), OwnerLimit: limit})
	noErr(t, "TaskDemand", err)
	eq(t, "demand", d[core.DefaultPool], store.PoolDemand{Queued: 56, Claimable: 5, Running: 5, OwnerBlocked: 51})
	eq(t, "other", d["other"], store.PoolDemand{Running: 2})

	// Without a limit everything ready is claimable.
	d, err = s.TaskDemand(t.Context(), &store.TaskDemandParams{Now: At(time.Hour)})
	noErr(t, "TaskDemand", err)
	eq(t, "unlimited", d[core.DefaultPool], store.PoolDemand{Queued: 56, Claimable: 56, Running: 5})
}

// testTaskConcurrentLifecycleCompletesOnce runs claimers, completers and
// lease losses at the same time: every task ends succeeded, and exactly one
// completion per task is accepted.
func testTaskConcurrentLifecycleCompletesOnce(t *testing.T, s store.Store, r Rules) {
	const total, normal, flaky = 600, 6, 2
	InsertN(t, s, total, MaxLost(100))
	workers := make([]*core.Worker, normal+flaky)
	for i := range workers {
		workers[i] = InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	}
	now := At(time.Hour)
	var (
		mu       sync.Mutex
		accepted = map[uuid.UUID]int{}
		wg       sync.WaitGroup
		errs     = make(chan error, len(workers))
	)
	for i, w := range workers {
		wg.Go(func() {
			ctx := ctxOf(t)
			for iter := 0; ; iter++ {
				if iter > 100000 {
					errs <- fmt.Errorf("worker %d did not finish", i)
					return
				}
				got, err := ClaimOne(ctx, s, &store.TaskClaimParams{Now: now, WorkerID: w.ID, Pool: core.DefaultPool, Max: 5, LeaseDuration: time.Minute})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					m, err := s.TaskCountByState(ctx)
					if err != nil {
						errs <- err
						return
					}
					if m[core.TaskQueued]+m[core.TaskRunning] == 0 {
						return
					}
					continue
				}
				requeued := i >= normal && iter%2 == 0
				if requeued {
					// This worker "dies": its leases are recycled before it reports.
					if _, err := r.TaskRequeueLost(ctx, s, &TaskRequeueLostParams{Now: now, WorkerIDs: []uuid.UUID{w.ID}}); err != nil {
						errs <- err
						return
					}
				}
				items := make([]store.TaskCompletion, len(got))
				for j, task := range got {
					items[j] = store.TaskCompletion{Lease: core.Lease{TaskID: task.ID, Token: *task.LeaseToken}, Result: json.RawMessage(`{}`)}
				}
				lost, err := CompleteOne(ctx, s, &store.TaskCompleteParams{Now: now, WorkerID: w.ID, Items: items})
				if err != nil {
					errs <- err
					return
				}
				if requeued && len(lost) != len(items) {
					errs <- fmt.Errorf("completion accepted after the lease was recycled: %d of %d lost", len(lost), len(items))
					return
				}
				lostSet := map[uuid.UUID]bool{}
				for _, l := range lost {
					lostSet[l.TaskID] = true
				}
				mu.Lock()
				for _, task := range got {
					if !lostSet[task.ID] {
						accepted[task.ID]++
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent lifecycle: %v", err)
	}
	eq(t, "tasks with an accepted completion", len(accepted), total)
	for id, n := range accepted {
		if n != 1 {
			t.Fatalf("task %s completed %d times", id, n)
		}
	}
	eq(t, "succeeded", countState(t, s, core.TaskSucceeded), total)
	done := 0
	for _, w := range workers {
		done += GetWorker(t, s, w.ID).TasksDone
	}
	eq(t, "sum of worker tasks_done", done, total)
}
