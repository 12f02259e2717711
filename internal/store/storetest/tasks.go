package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

func taskCases() []suiteCase {
	return []suiteCase{
		{name: "Backend", fn: testBackend},
		{name: "MigrateIdempotent", fn: testMigrateIdempotent},
		{name: "TaskInsertAndGet", fn: testTaskInsertAndGet},
		{name: "TaskGetNotFound", fn: testTaskGetNotFound},
		{name: "TaskInsertIdempotencyKey", fn: testTaskInsertIdempotencyKey},
		{name: "TaskInsertManyReadsBack", fn: testTaskInsertManyReadsBack},
		{name: "TaskInsertDuplicateID", fn: testTaskInsertDuplicateID},
		{name: "TaskInsertIdempotencyKeyRace", fn: testTaskInsertIdempotencyKeyRace},
		{name: "TaskInsertUnknownDependency", fn: testTaskInsertUnknownDependency},
		{name: "TaskInsertBatchOneBadWritesNothing", rule: testTaskInsertBatchOneBad},
		{name: "TaskInsertDependencyOnFinalTask", rule: testTaskInsertDependencyOnFinalTask},
		{name: "TaskDependenciesGateClaims", fn: testTaskDependenciesGateClaims},
		{name: "TaskDependencyFailurePropagates", rule: testTaskDependencyFailurePropagates},
		{name: "TaskDependencyCancelPropagates", rule: testTaskDependencyCancelPropagates},
		{name: "TaskListFiltersAndPaging", fn: testTaskListFiltersAndPaging},
		{name: "TaskCountByState", rule: testTaskCountByState},
	}
}

func testBackend(t *testing.T, s store.Store) {
	if b := s.Backend(); b != "sqlite" && b != "postgres" {
		t.Fatalf("Backend() = %q, want sqlite or postgres", b)
	}
}

func testMigrateIdempotent(t *testing.T, s store.Store) {
	applied, err := s.Migrate(t.Context())
	noErr(t, "Migrate", err)
	if len(applied) != 0 {
		t.Fatalf("Migrate on a migrated store applied %v, want nothing", applied)
	}
}

func testTaskInsertAndGet(t *testing.T, s store.Store) {
	in := NewTask(func(task *core.Task) {
		task.Type = "video.render"
		task.Params = json.RawMessage(`{"prompt":"a cat","steps":30,"nested":{"x":[1,2]}}`)
		task.Owner = "alice"
		task.Priority = 7
		task.Pool = "gpu-big"
		task.MaxAttempts = 5
		task.MaxLost = 2
		task.Timeout = 90 * time.Minute
		task.IdempotencyKey = "job-1"
		task.RunAfter = At(time.Minute)
	})
	got := InsertTasks(t, s, in)[0]
	for _, task := range []*core.Task{got, Get(t, s, in.ID)} {
		eq(t, "ID", task.ID, in.ID)
		eq(t, "Type", task.Type, "video.render")
		jsonEq(t, "Params", task.Params, `{"prompt":"a cat","steps":30,"nested":{"x":[1,2]}}`)
		eq(t, "Owner", task.Owner, "alice")
		eq(t, "Priority", task.Priority, 7)
		eq(t, "Pool", task.Pool, "gpu-big")
		eq(t, "MaxAttempts", task.MaxAttempts, 5)
		eq(t, "MaxLost", task.MaxLost, 2)
		eq(t, "Timeout", task.Timeout, 90*time.Minute)
		eq(t, "IdempotencyKey", task.IdempotencyKey, "job-1")
		eq(t, "State", task.State, core.TaskQueued)
		eq(t, "Attempt", task.Attempt, 0)
		eq(t, "Failures", task.Failures, 0)
		eq(t, "Lost", task.Lost, 0)
		eq(t, "DepsPending", task.DepsPending, 0)
		if task.WorkerID != nil || task.LeaseToken != nil || task.LeaseExpiresAt != nil || task.StartedAt != nil || task.FinishedAt != nil {
			t.Fatalf("new task has run fields set: %s", taskSnapshot(task))
		}
		eq(t, "Error", task.Error, "")
		if task.Progress != nil {
			t.Fatalf("Progress = %v, want nil", *task.Progress)
		}
		timeEq(t, "CreatedAt", task.CreatedAt, Base)
		timeEq(t, "RunAfter", task.RunAfter, At(time.Minute))
		timeEq(t, "UpdatedAt", task.UpdatedAt, Base)
	}
}

func testTaskGetNotFound(t *testing.T, s store.Store) {
	_, err := s.TaskGet(t.Context(), uuid.New())
	isErr(t, "TaskGet(unknown)", err, core.ErrNotFound)
}

func testTaskInsertIdempotencyKey(t *testing.T, s store.Store) {
	first := InsertTasks(t, s, NewTask(Owner("alice"), func(task *core.Task) { task.IdempotencyKey = "k1" }))[0]

	// Same owner and key: the existing task comes back, nothing is inserted.
	dup := NewTask(Owner("alice"), func(task *core.Task) { task.IdempotencyKey = "k1"; task.Type = "other" })
	other := NewTask(Owner("bob"), func(task *core.Task) { task.IdempotencyKey = "k1" })
	res, err := s.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: At(time.Second), Tasks: []*core.Task{dup, other}})
	noErr(t, "TaskInsertMany", err)
	eq(t, "len(results)", len(res), 2)
	eq(t, "dup.Existing", res[0].Existing, true)
	eq(t, "dup.Task.ID", res[0].Task.ID, first.ID)
	eq(t, "dup.Task.Type", res[0].Task.Type, "render")
	eq(t, "other owner Existing", res[1].Existing, false)
	eq(t, "other owner ID", res[1].Task.ID, other.ID)
	_, err = s.TaskGet(t.Context(), dup.ID)
	isErr(t, "TaskGet(duplicate)", err, core.ErrNotFound)
	eq(t, "total tasks", totalTasks(t, s), 2)

	// Tasks without a key never collide.
	InsertTasks(t, s, NewTask(Owner("alice")), NewTask(Owner("alice")))
	eq(t, "total tasks", totalTasks(t, s), 4)

	// A duplicate key within one batch returns the batch's first task.
	a := NewTask(Owner("carol"), func(task *core.Task) { task.IdempotencyKey = "same" })
	b := NewTask(Owner("carol"), func(task *core.Task) { task.IdempotencyKey = "same" })
	res, err = s.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: Base, Tasks: []*core.Task{a, b}})
	noErr(t, "TaskInsertMany(batch duplicate)", err)
	eq(t, "a.Existing", res[0].Existing, false)
	eq(t, "b.Existing", res[1].Existing, true)
	eq(t, "b.Task.ID", res[1].Task.ID, a.ID)
	eq(t, "total tasks", totalTasks(t, s), 5)
}

// A batch of 300 varied tasks (one with 200 KB of params, larger than a
// bulk write's chunk; non-ASCII text; negative priorities; some keys;
// dependencies on an existing task and on earlier batch tasks; times with
// nanoseconds and before 2000 and 1970) comes back from TaskInsertMany
// exactly as TaskGet then reads it.
func testTaskInsertManyReadsBack(t *testing.T, s store.Store) {
	existing := InsertTasks(t, s, NewTask())[0]
	big := json.RawMessage(`{"blob":"` + strings.Repeat("x", 200<<10) + `"}`)
	tasks := make([]*core.Task, 300)
	for i := range tasks {
		tasks[i] = NewTask(func(task *core.Task) {
			task.Type = fmt.Sprintf("type-%d-é", i%7)
			task.Params = json.RawMessage(fmt.Sprintf(`{"i":%d,"s":"ü ✓"}`, i))
			task.Owner = fmt.Sprintf("owner-%d-ø", i%5)
			task.Pool = fmt.Sprintf("pool-%d", i%3)
			task.Priority = i%11 - 5
			task.MaxAttempts, task.MaxLost = 1+i%4, i%3
			task.Timeout = time.Duration(i+1) * 1500 * time.Millisecond
			created := Base.Add(time.Duration(i)*time.Second + 123456789*time.Nanosecond)
			task.CreatedAt, task.RunAfter, task.UpdatedAt = created, created.Add(time.Minute), created
		})
		switch {
		case i == 42:
			tasks[i].Params = big
		case i == 43:
			tasks[i].RunAfter = time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC)
		case i == 44:
			tasks[i].RunAfter = time.Date(1969, 7, 20, 20, 17, 40, 1000, time.UTC)
		}
		if i%4 == 0 {
			tasks[i].IdempotencyKey = fmt.Sprintf("key-%d", i)
		}
		if i%3 == 0 && i > 0 {
			tasks[i].DependsOn = []uuid.UUID{tasks[i-1].ID, existing.ID, tasks[i/2].ID}
		}
	}
	res, err := s.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: Base, Tasks: tasks})
	noErr(t, "TaskInsertMany", err)
	eq(t, "len(results)", len(res), len(tasks))
	for i, r := range res {
		in, got := tasks[i], r.Task
		eq(t, fmt.Sprintf("tasks[%d].Existing", i), r.Existing, false)
		for _, task := range []*core.Task{got, Get(t, s, in.ID)} {
			what := func(f string) string { return fmt.Sprintf("tasks[%d].%s", i, f) }
			eq(t, what("ID"), task.ID, in.ID)
			eq(t, what("Type"), task.Type, in.Type)
			jsonEq(t, what("Params"), task.Params, string(in.Params))
			eq(t, what("Owner"), task.Owner, in.Owner)
			eq(t, what("Pool"), task.Pool, in.Pool)
			eq(t, what("Priority"), task.Priority, in.Priority)
			eq(t, what("MaxAttempts"), task.MaxAttempts, in.MaxAttempts)
			eq(t, what("MaxLost"), task.MaxLost, in.MaxLost)
			eq(t, what("Timeout"), task.Timeout, in.Timeout)
			eq(t, what("IdempotencyKey"), task.IdempotencyKey, in.IdempotencyKey)
			eq(t, what("State"), task.State, core.TaskQueued)
			sameIDs(t, what("DependsOn"), task.DependsOn, in.DependsOn)
			timeEq(t, what("CreatedAt"), task.CreatedAt, in.CreatedAt.Truncate(time.Microsecond))
			timeEq(t, what("RunAfter"), task.RunAfter, in.RunAfter.Truncate(time.Microsecond))
			timeEq(t, what("UpdatedAt"), task.UpdatedAt, in.UpdatedAt.Truncate(time.Microsecond))
		}
		pending := len(in.DependsOn) // all distinct, all queued
		eq(t, fmt.Sprintf("tasks[%d].DepsPending", i), got.DepsPending, pending)
		eq(t, fmt.Sprintf("tasks[%d].DepsPending read back", i), Get(t, s, in.ID).DepsPending, pending)
	}
}

// A batch holding the id of an existing task is rejected naming that
// task's id, writes nothing, and leaves the store working.
func testTaskInsertDuplicateID(t *testing.T, s store.Store) {
	old := InsertTasks(t, s, NewTask())[0]
	fresh, dup := NewTask(), NewTask(func(task *core.Task) { task.ID = old.ID; task.Type = "other" })
	_, err := s.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: Base, Tasks: []*core.Task{fresh, dup}})
	invalid(t, "TaskInsertMany(duplicate id)", err, "tasks[1].id")
	_, err = s.TaskGet(t.Context(), fresh.ID)
	isErr(t, "TaskGet(first of rejected batch)", err, core.ErrNotFound)
	eq(t, "existing task's type", Get(t, s, old.ID).Type, "render")
	for range 3 { // every pooled connection is usable again
		InsertTasks(t, s, NewTask())
	}
	eq(t, "total tasks", totalTasks(t, s), 4)
}

// Concurrent batches with the same owner and idempotency key insert one
// task: every caller gets that task back, whichever batch inserted it.
func testTaskInsertIdempotencyKeyRace(t *testing.T, s store.Store) {
	const callers = 8
	got := make([]uuid.UUID, callers)
	errs := make(chan error, callers)
	for i := range callers {
		go func() {
			other := NewTask(Owner(fmt.Sprintf("other-%d", i)))
			keyed := NewTask(Owner("alice"), func(task *core.Task) { task.IdempotencyKey = "race" })
			res, err := s.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: Base, Tasks: []*core.Task{other, keyed}})
			if err == nil {
				got[i] = res[1].Task.ID
			}
			errs <- err
		}()
	}
	for range callers {
		noErr(t, "TaskInsertMany(same key, concurrently)", <-errs)
	}
	for i := range got {
		eq(t, fmt.Sprintf("caller %d's task", i), got[i], got[0])
	}
	eq(t, "total tasks", totalTasks(t, s), callers+1)
}

func testTaskInsertUnknownDependency(t *testing.T, s store.Store) {
	ok := NewTask()
	bad := NewTask(DependsOn(ok.ID, uuid.New()))
	_, err := s.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: Base, Tasks: []*core.Task{ok, bad}})
	invalid(t, "TaskInsertMany(unknown dep)", err, "depends_on")
	eq(t, "tasks written", totalTasks(t, s), 0)
	_, err = s.TaskGet(t.Context(), ok.ID)
	isErr(t, "TaskGet(first of rejected batch)", err, core.ErrNotFound)

	// A dependency on a later task of the same batch is not allowed either.
	later := NewTask()
	first := NewTask(DependsOn(later.ID))
	_, err = s.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: Base, Tasks: []*core.Task{first, later}})
	invalid(t, "TaskInsertMany(forward dep)", err, "depends_on")
	eq(t, "tasks written", totalTasks(t, s), 0)
}

// A batch of ten chained tasks, each with an idempotency key and a
// callback, whose task 7 depends on an unknown task: rejected naming
// tasks[7].depends_on, nothing written (keys free, no callback). The
// corrected batch then inserts all ten with their callbacks, recorded in
// the same transaction: cancelling the chain enqueues ten webhooks.
func testTaskInsertBatchOneBad(t *testing.T, s store.Store, r Rules) {
	batch := func(bad bool) ([]*core.Task, []string) {
		tasks := make([]*core.Task, 10)
		urls := make([]string, 10)
		for i := range tasks {
			key := fmt.Sprintf("k%d", i)
			tasks[i] = NewTask(func(task *core.Task) { task.IdempotencyKey = key })
			if i > 0 {
				tasks[i].DependsOn = []uuid.UUID{tasks[i-1].ID}
			}
			urls[i] = fmt.Sprintf("https://example.com/hook/%d", i)
		}
		if bad {
			tasks[7].DependsOn = append(tasks[7].DependsOn, uuid.New())
		}
		return tasks, urls
	}
	tasks, urls := batch(true)
	_, err := s.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: Base, Tasks: tasks, CallbackURLs: urls})
	invalid(t, "TaskInsertMany(tasks[7] bad)", err, "tasks[7].depends_on")
	if e, _ := errors.AsType[*core.Error](err); e.Field != "tasks[7].depends_on" {
		t.Fatalf("error field = %q, want tasks[7].depends_on", e.Field)
	}
	eq(t, "tasks written", totalTasks(t, s), 0)
	n, err := s.WebhookEnqueue(t.Context(), At(time.Second))
	noErr(t, "WebhookEnqueue", err)
	eq(t, "webhooks of a rejected batch", n, 0)

	tasks, urls = batch(false)
	res, err := s.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: Base, Tasks: tasks, CallbackURLs: urls})
	noErr(t, "TaskInsertMany(corrected)", err)
	for i, x := range res {
		eq(t, fmt.Sprintf("tasks[%d].Existing", i), x.Existing, false)
	}
	eq(t, "tasks written", totalTasks(t, s), 10)
	_, err = r.TaskCancel(t.Context(), s, tasks[0].ID, At(time.Second))
	noErr(t, "TaskCancel", err)
	n, err = s.WebhookEnqueue(t.Context(), At(2*time.Second))
	noErr(t, "WebhookEnqueue", err)
	eq(t, "webhooks enqueued for the cancelled chain", n, 10)
}

func testTaskInsertDependencyOnFinalTask(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	tasks := InsertTasks(t, s, NewTask(MaxAttempts(1)), NewTask(Created(At(time.Second))), NewTask(Created(At(2*time.Second))))
	claimed := Claim(t, s, w, At(time.Minute), 2, 0)
	eq(t, "claimed", len(claimed), 2)
	_, err := r.TaskFail(t.Context(), s, &TaskFailParams{Now: At(2 * time.Minute), WorkerID: w.ID, Lease: LeaseOf(t, claimed[0]), Error: "boom"})
	noErr(t, "TaskFail", err)
	Complete(t, s, w, At(2*time.Minute), claimed[1])
	_, err = r.TaskCancel(t.Context(), s, tasks[2].ID, At(2*time.Minute))
	noErr(t, "TaskCancel", err)

	for _, dep := range []uuid.UUID{tasks[0].ID, tasks[2].ID} {
		_, err = s.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: At(3 * time.Minute), Tasks: []*core.Task{NewTask(DependsOn(dep))}})
		invalid(t, "TaskInsertMany(dep on failed/cancelled)", err, "depends_on")
	}
	eq(t, "total tasks", totalTasks(t, s), 3)

	// A dependency that already succeeded is satisfied at once.
	got := InsertTasks(t, s, NewTask(DependsOn(tasks[1].ID)))[0]
	eq(t, "DepsPending", got.DepsPending, 0)
	eq(t, "claimable", len(Claim(t, s, w, At(4*time.Minute), 5, 0)), 1)
}

func testTaskDependenciesGateClaims(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	a := NewTask(Priority(-5))
	b := NewTask(DependsOn(a.ID), Priority(10))
	c := NewTask(DependsOn(a.ID, b.ID), Priority(10))
	got := InsertTasks(t, s, a, b, c)
	eq(t, "a.DepsPending", got[0].DepsPending, 0)
	eq(t, "b.DepsPending", got[1].DepsPending, 1)
	eq(t, "c.DepsPending", got[2].DepsPending, 2)
	sameIDs(t, "TaskGet(c).DependsOn", Get(t, s, c.ID).DependsOn, []uuid.UUID{a.ID, b.ID})

	claimed := Claim(t, s, w, At(time.Second), 10, 0)
	orderedIDs(t, "first claim", ids(claimed), []uuid.UUID{a.ID})
	eq(t, "second claim while a runs", len(Claim(t, s, w, At(time.Second), 10, 0)), 0)

	Complete(t, s, w, At(2*time.Second), claimed[0])
	eq(t, "c.DepsPending", Get(t, s, c.ID).DepsPending, 1)
	claimed = Claim(t, s, w, At(3*time.Second), 10, 0)
	orderedIDs(t, "claim after a", ids(claimed), []uuid.UUID{b.ID})

	Complete(t, s, w, At(4*time.Second), claimed[0])
	eq(t, "c.DepsPending", Get(t, s, c.ID).DepsPending, 0)
	claimed = Claim(t, s, w, At(5*time.Second), 10, 0)
	orderedIDs(t, "claim after b", ids(claimed), []uuid.UUID{c.ID})
}

func testTaskDependencyFailurePropagates(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	a := NewTask(MaxAttempts(1))
	b := NewTask(DependsOn(a.ID))
	c := NewTask(DependsOn(b.ID))
	d := NewTask(Created(At(time.Second)))
	InsertTasks(t, s, a, b, c, d)
	claimed := Claim(t, s, w, At(time.Second), 1, 0)
	orderedIDs(t, "claim", ids(claimed), []uuid.UUID{a.ID})

	got, err := r.TaskFail(t.Context(), s, &TaskFailParams{
		Now: At(time.Minute), WorkerID: w.ID, Lease: LeaseOf(t, claimed[0]),
		Error: "CUDA out of memory", Retryable: true, RetryAt: At(2 * time.Minute),
	})
	noErr(t, "TaskFail", err)
	eq(t, "a.State", got.State, core.TaskFailed)
	for id, dep := range map[uuid.UUID]uuid.UUID{b.ID: a.ID, c.ID: b.ID} {
		task := Get(t, s, id)
		eq(t, "dependent State", task.State, core.TaskFailed)
		eq(t, "dependent Error", task.Error, core.DependencyReason(dep))
		timePtrEq(t, "dependent FinishedAt", task.FinishedAt, At(time.Minute))
	}
	eq(t, "unrelated State", Get(t, s, d.ID).State, core.TaskQueued)
}

func testTaskDependencyCancelPropagates(t *testing.T, s store.Store, r Rules) {
	a := NewTask()
	b := NewTask(DependsOn(a.ID))
	c := NewTask(DependsOn(b.ID))
	InsertTasks(t, s, a, b, c)
	got, err := r.TaskCancel(t.Context(), s, a.ID, At(time.Minute))
	noErr(t, "TaskCancel", err)
	eq(t, "a.State", got.State, core.TaskCancelled)
	for id, dep := range map[uuid.UUID]uuid.UUID{b.ID: a.ID, c.ID: b.ID} {
		task := Get(t, s, id)
		eq(t, "dependent State", task.State, core.TaskFailed)
		eq(t, "dependent Error", task.Error, core.DependencyReason(dep))
	}
}

func testTaskListFiltersAndPaging(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	var all []*core.Task
	for i := range 10 {
		mods := []func(*core.Task){Created(At(time.Duration(i) * time.Second))}
		if i%2 == 0 {
			mods = append(mods, Owner("alice"))
		} else {
			mods = append(mods, Owner("bob"))
		}
		if i == 9 {
			mods = append(mods, Pool("other"), func(task *core.Task) { task.Type = "special" })
		}
		all = append(all, NewTask(mods...))
	}
	InsertTasks(t, s, all...)
	// Claim the oldest default-pool task (index 0, alice).
	claimed := Claim(t, s, w, At(time.Minute), 1, 0)
	orderedIDs(t, "claim", ids(claimed), []uuid.UUID{all[0].ID})

	list := func(p store.TaskListParams) []uuid.UUID {
		t.Helper()
		got, err := s.TaskList(t.Context(), &p)
		noErr(t, "TaskList", err)
		return ids(got)
	}
	rev := func(idx ...int) []uuid.UUID {
		out := make([]uuid.UUID, len(idx))
		for i, j := range idx {
			out[i] = all[j].ID
		}
		return out
	}
	orderedIDs(t, "all newest first", list(store.TaskListParams{}), rev(9, 8, 7, 6, 5, 4, 3, 2, 1, 0))
	orderedIDs(t, "owner alice", list(store.TaskListParams{Owner: "alice"}), rev(8, 6, 4, 2, 0))
	orderedIDs(t, "pool other", list(store.TaskListParams{Pool: "other"}), rev(9))
	orderedIDs(t, "type special", list(store.TaskListParams{Type: "special"}), rev(9))
	orderedIDs(t, "state running", list(store.TaskListParams{States: []core.TaskState{core.TaskRunning}}), rev(0))
	orderedIDs(t, "states running+queued bob", list(store.TaskListParams{States: []core.TaskState{core.TaskRunning, core.TaskQueued}, Owner: "bob"}), rev(9, 7, 5, 3, 1))
	orderedIDs(t, "worker", list(store.TaskListParams{WorkerID: &w.ID}), rev(0))
	orderedIDs(t, "limit", list(store.TaskListParams{Limit: 3}), rev(9, 8, 7))
	orderedIDs(t, "page 2", list(store.TaskListParams{Limit: 3, BeforeID: &all[7].ID}), rev(6, 5, 4))
	orderedIDs(t, "page with filter", list(store.TaskListParams{Owner: "alice", BeforeID: &all[4].ID}), rev(2, 0))
}

func testTaskCountByState(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 6)
	claimed := Claim(t, s, w, At(time.Hour), 3, 0)
	Complete(t, s, w, At(time.Hour), claimed[0])
	_, err := r.TaskCancel(t.Context(), s, claimed[1].ID, At(time.Hour))
	noErr(t, "TaskCancel", err)
	m, err := s.TaskCountByState(t.Context())
	noErr(t, "TaskCountByState", err)
	eq(t, "queued", m[core.TaskQueued], 3)
	eq(t, "running", m[core.TaskRunning], 1)
	eq(t, "succeeded", m[core.TaskSucceeded], 1)
	eq(t, "cancelled", m[core.TaskCancelled], 1)
	eq(t, "failed", m[core.TaskFailed], 0)
}
