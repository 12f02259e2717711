package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

func lifecycleCases() []suiteCase {
	return []suiteCase{
		{name: "TaskLeaseRenewManyWorkers", fn: testTaskLeaseRenewManyWorkers},
		{name: "TaskStaleLeaseRejected", rule: testTaskStaleLeaseRejected},
		{name: "TaskProgress", rule: testTaskProgress},
		{name: "TaskRelease", fn: testTaskRelease},
		{name: "TaskCompleteMany", fn: testTaskCompleteMany},
		{name: "TaskFailRetryBackoff", rule: testTaskFailRetryBackoff},
		{name: "TaskFailNotRetryable", rule: testTaskFailNotRetryable},
		{name: "TaskRequeueLostPoison", rule: testTaskRequeueLostPoison},
		{name: "TaskRequeueLostExpiredLeases", rule: testTaskRequeueLostExpiredLeases},
		{name: "TaskOrphanAtAttemptLimitReachesFinalState", rule: testTaskOrphanAtAttemptLimit},
		{name: "TaskTimeoutRunning", rule: testTaskTimeoutRunning},
		{name: "TaskCancel", rule: testTaskCancel},
		{name: "TaskRetry", rule: testTaskRetry},
		{name: "TaskExpireQueued", rule: testTaskExpireQueued},
	}
}

func testTaskLeaseRenewManyWorkers(t *testing.T, s store.Store) {
	w1 := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	w2 := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 4)
	c1 := Claim(t, s, w1, At(time.Minute), 2, 0)
	c2 := Claim(t, s, w2, At(time.Minute), 2, 0)
	until := At(5 * time.Minute)
	staleToken := core.Lease{TaskID: c1[0].ID, Token: uuid.New()}
	wrongWorker := LeaseOf(t, c2[1]) // presented by w1, held by w2
	unknownTask := core.Lease{TaskID: uuid.New(), Token: uuid.New()}
	lost, err := s.TaskLeaseRenew(t.Context(), &store.TaskLeaseRenewParams{
		Now: At(2 * time.Minute), Until: until,
		Leases: []store.WorkerLease{
			{WorkerID: w1.ID, Lease: LeaseOf(t, c1[0])},
			{WorkerID: w1.ID, Lease: LeaseOf(t, c1[1])},
			{WorkerID: w2.ID, Lease: LeaseOf(t, c2[0])},
			{WorkerID: w1.ID, Lease: staleToken},
			{WorkerID: w1.ID, Lease: wrongWorker},
			{WorkerID: w2.ID, Lease: unknownTask},
		},
	})
	noErr(t, "TaskLeaseRenew", err)
	var lostIDs []uuid.UUID
	for _, l := range lost {
		lostIDs = append(lostIDs, l.TaskID)
	}
	sameIDs(t, "lost", lostIDs, []uuid.UUID{c1[0].ID, c2[1].ID, unknownTask.TaskID})
	for _, l := range lost {
		if l.TaskID == c1[0].ID && l.Token != staleToken.Token {
			t.Fatalf("lost lease carries token %s, want the presented %s", l.Token, staleToken.Token)
		}
	}
	for _, task := range []*core.Task{c1[0], c1[1], c2[0]} {
		timePtrEq(t, "renewed LeaseExpiresAt", Get(t, s, task.ID).LeaseExpiresAt, until)
	}
	timePtrEq(t, "not renewed LeaseExpiresAt", Get(t, s, c2[1].ID).LeaseExpiresAt, At(time.Minute+30*time.Second))

	lost, err = s.TaskLeaseRenew(t.Context(), &store.TaskLeaseRenewParams{Now: At(3 * time.Minute), Until: until})
	noErr(t, "TaskLeaseRenew(empty)", err)
	eq(t, "lost(empty)", len(lost), 0)
}

func testTaskStaleLeaseRejected(t *testing.T, s store.Store, r Rules) {
	w1 := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	w2 := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertTasks(t, s, NewTask())
	first := Claim(t, s, w1, At(time.Minute), 1, 0)[0]
	// w1 dies; its task is requeued and claimed by w2.
	_, err := r.TaskRequeueLost(t.Context(), s, &TaskRequeueLostParams{Now: At(2 * time.Minute), WorkerIDs: []uuid.UUID{w1.ID}})
	noErr(t, "TaskRequeueLost", err)
	second := Claim(t, s, w2, At(3*time.Minute), 1, 0)[0]
	eq(t, "same task", second.ID, first.ID)
	eq(t, "Attempt", second.Attempt, 2)
	before := taskSnapshot(Get(t, s, first.ID))
	stale := LeaseOf(t, first)
	now := At(4 * time.Minute)

	lost, err := s.TaskLeaseRenew(t.Context(), &store.TaskLeaseRenewParams{Now: now, Until: At(time.Hour), Leases: []store.WorkerLease{{WorkerID: w1.ID, Lease: stale}}})
	noErr(t, "TaskLeaseRenew", err)
	eq(t, "renew lost", len(lost), 1)

	lost, err = CompleteOne(t.Context(), s, &store.TaskCompleteParams{Now: now, WorkerID: w1.ID, Items: []store.TaskCompletion{{Lease: stale, Result: json.RawMessage(`{"x":1}`)}}})
	noErr(t, "TaskCompleteMany", err)
	eq(t, "complete lost", len(lost), 1)
	eq(t, "complete lost task", lost[0].TaskID, first.ID)

	_, err = r.TaskFail(t.Context(), s, &TaskFailParams{Now: now, WorkerID: w1.ID, Lease: stale, Error: "late", Retryable: true, RetryAt: now})
	isErr(t, "TaskFail(stale)", err, core.ErrLeaseLost)

	p := 0.9
	err = s.TaskProgress(t.Context(), &store.TaskProgressParams{Now: now, WorkerID: w1.ID, Lease: stale, Progress: &p, Message: "late"})
	isErr(t, "TaskProgress(stale)", err, core.ErrLeaseLost)

	eq(t, "task after stale calls", taskSnapshot(Get(t, s, first.ID)), before)
	eq(t, "w1 tasks_done", GetWorker(t, s, w1.ID).TasksDone, 0)
	eq(t, "w1 tasks_failed", GetWorker(t, s, w1.ID).TasksFailed, 0)

	// The current holder still completes normally.
	Complete(t, s, w2, now, second)
	eq(t, "state", Get(t, s, first.ID).State, core.TaskSucceeded)
}

func testTaskProgress(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertTasks(t, s, NewTask())
	c := Claim(t, s, w, At(time.Minute), 1, 0)[0]
	p := 0.25
	// Another worker presenting the right lease token changes nothing.
	other := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	err := s.TaskProgress(t.Context(), &store.TaskProgressParams{Now: At(2 * time.Minute), WorkerID: other.ID, Lease: LeaseOf(t, c), Progress: &p, Message: "forged"})
	isErr(t, "TaskProgress(other worker)", err, core.ErrLeaseLost)
	_, err = r.TaskFail(t.Context(), s, &TaskFailParams{Now: At(2 * time.Minute), WorkerID: other.ID, Lease: LeaseOf(t, c), Error: "forged", RetryAt: At(2 * time.Minute)})
	isErr(t, "TaskFail(other worker)", err, core.ErrLeaseLost)
	if got := Get(t, s, c.ID); got.State != core.TaskRunning || got.Progress != nil || got.Failures != 0 {
		t.Fatalf("after another worker's calls: state %s progress %v failures %d, want running, none, 0", got.State, got.Progress, got.Failures)
	}

	noErr(t, "TaskProgress", s.TaskProgress(t.Context(), &store.TaskProgressParams{Now: At(2 * time.Minute), WorkerID: w.ID, Lease: LeaseOf(t, c), Progress: &p, Message: "step 5/20"}))
	got := Get(t, s, c.ID)
	if got.Progress == nil || *got.Progress != 0.25 {
		t.Fatalf("Progress = %v, want 0.25", got.Progress)
	}
	eq(t, "ProgressMsg", got.ProgressMsg, "step 5/20")
	eq(t, "State", got.State, core.TaskRunning)

	err = s.TaskProgress(t.Context(), &store.TaskProgressParams{Now: At(2 * time.Minute), WorkerID: w.ID, Lease: core.Lease{TaskID: uuid.New(), Token: uuid.New()}, Progress: &p})
	isErr(t, "TaskProgress(unknown task)", err, core.ErrLeaseLost)
}

func testTaskCompleteMany(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 3)
	c := Claim(t, s, w, At(time.Minute), 3, 0)
	now := At(2 * time.Minute)
	bogus := core.Lease{TaskID: c[2].ID, Token: uuid.New()}
	lost, err := CompleteOne(t.Context(), s, &store.TaskCompleteParams{Now: now, WorkerID: w.ID, Items: []store.TaskCompletion{
		{Lease: LeaseOf(t, c[0]), Result: json.RawMessage(`{"url":"s3://a"}`)},
		{Lease: LeaseOf(t, c[1]), Result: json.RawMessage(`{"url":"s3://b"}`)},
		{Lease: bogus, Result: json.RawMessage(`{}`)},
	}})
	noErr(t, "TaskCompleteMany", err)
	eq(t, "lost", len(lost), 1)
	eq(t, "lost lease", lost[0], bogus)

	got := Get(t, s, c[0].ID)
	eq(t, "State", got.State, core.TaskSucceeded)
	jsonEq(t, "Result", got.Result, `{"url":"s3://a"}`)
	timePtrEq(t, "FinishedAt", got.FinishedAt, now)
	if got.LeaseToken != nil || got.LeaseExpiresAt != nil {
		t.Fatalf("lease not cleared: %s", taskSnapshot(got))
	}
	jsonEq(t, "Result b", Get(t, s, c[1].ID).Result, `{"url":"s3://b"}`)
	eq(t, "third still running", Get(t, s, c[2].ID).State, core.TaskRunning)

	wk := GetWorker(t, s, w.ID)
	eq(t, "TasksDone", wk.TasksDone, 2)
	timePtrEq(t, "LastTaskAt", wk.LastTaskAt, now)

	// A task is never completed twice.
	lost, err = CompleteOne(t.Context(), s, &store.TaskCompleteParams{Now: At(3 * time.Minute), WorkerID: w.ID, Items: []store.TaskCompletion{{Lease: LeaseOf(t, c[0]), Result: json.RawMessage(`{"url":"s3://c"}`)}}})
	noErr(t, "TaskCompleteMany(again)", err)
	eq(t, "lost(again)", len(lost), 1)
	jsonEq(t, "Result after second complete", Get(t, s, c[0].ID).Result, `{"url":"s3://a"}`)
	eq(t, "TasksDone", GetWorker(t, s, w.ID).TasksDone, 2)
}

func testTaskFailRetryBackoff(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	task := InsertTasks(t, s, NewTask(MaxAttempts(3)))[0]
	now := At(time.Minute)
	for attempt := 1; attempt <= 3; attempt++ {
		c := Claim(t, s, w, now, 1, 0)
		eq(t, fmt.Sprintf("attempt %d claimed", attempt), len(c), 1)
		eq(t, "Attempt", c[0].Attempt, attempt)
		retryAt := now.Add(time.Duration(attempt) * 10 * time.Second)
		got, err := r.TaskFail(t.Context(), s, &TaskFailParams{
			Now: now, WorkerID: w.ID, Lease: LeaseOf(t, c[0]),
			Error: fmt.Sprintf("error %d", attempt), Retryable: true, RetryAt: retryAt,
		})
		noErr(t, "TaskFail", err)
		eq(t, "Failures", got.Failures, attempt)
		eq(t, "returned = stored", taskSnapshot(got), taskSnapshot(Get(t, s, task.ID)))
		eq(t, "worker TasksFailed", GetWorker(t, s, w.ID).TasksFailed, attempt)
		timePtrEq(t, "worker LastTaskAt", GetWorker(t, s, w.ID).LastTaskAt, now)
		if attempt < 3 {
			eq(t, "State", got.State, core.TaskQueued)
			timeEq(t, "RunAfter", got.RunAfter, retryAt)
			if got.LeaseToken != nil || got.WorkerID != nil || got.LeaseExpiresAt != nil {
				t.Fatalf("requeued task still holds a lease: %s", taskSnapshot(got))
			}
			eq(t, "claim before backoff", len(Claim(t, s, w, retryAt.Add(-time.Second), 1, 0)), 0)
			now = retryAt
			continue
		}
		eq(t, "State", got.State, core.TaskFailed)
		eq(t, "Error", got.Error, "error 3")
		timePtrEq(t, "FinishedAt", got.FinishedAt, now)
		if got.LeaseToken != nil {
			t.Fatalf("failed task still holds a lease token")
		}
	}
	eq(t, "claim after final failure", len(Claim(t, s, w, At(time.Hour), 1, 0)), 0)
}

func testTaskFailNotRetryable(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertTasks(t, s, NewTask(MaxAttempts(5)))
	c := Claim(t, s, w, At(time.Minute), 1, 0)[0]
	got, err := r.TaskFail(t.Context(), s, &TaskFailParams{Now: At(2 * time.Minute), WorkerID: w.ID, Lease: LeaseOf(t, c), Error: "bad params", RetryAt: At(3 * time.Minute)})
	noErr(t, "TaskFail", err)
	eq(t, "State", got.State, core.TaskFailed)
	eq(t, "Failures", got.Failures, 1)
	eq(t, "Error", got.Error, "bad params")
	_, err = r.TaskFail(t.Context(), s, &TaskFailParams{Now: At(2 * time.Minute), WorkerID: w.ID, Lease: LeaseOf(t, c), Error: "again"})
	isErr(t, "TaskFail(again)", err, core.ErrLeaseLost)
}

func testTaskRequeueLostPoison(t *testing.T, s store.Store, r Rules) {
	dependent := NewTask(Created(At(time.Second)))
	poison := NewTask(MaxLost(3), MaxAttempts(3))
	dependent.DependsOn = []uuid.UUID{poison.ID}
	InsertTasks(t, s, poison, dependent)
	now := At(time.Minute)
	for i := 1; i <= 3; i++ {
		w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
		c := Claim(t, s, w, now, 5, 0)
		orderedIDs(t, fmt.Sprintf("claim %d", i), ids(c), []uuid.UUID{poison.ID})
		now = now.Add(time.Minute)
		got, err := r.TaskRequeueLost(t.Context(), s, &TaskRequeueLostParams{Now: now, WorkerIDs: []uuid.UUID{w.ID, uuid.New()}})
		noErr(t, "TaskRequeueLost", err)
		eq(t, "requeued", len(got), 1)
		eq(t, "Lost", got[0].Lost, i)
		eq(t, "Failures", got[0].Failures, 0)
		eq(t, "returned = stored", taskSnapshot(got[0]), taskSnapshot(Get(t, s, poison.ID)))
		if got[0].LeaseToken != nil || got[0].LeaseExpiresAt != nil {
			t.Fatalf("lost task still holds a lease: %s", taskSnapshot(got[0]))
		}
		if i < 3 {
			eq(t, "State", got[0].State, core.TaskQueued)
			timeEq(t, "RunAfter", got[0].RunAfter, now)
			continue
		}
		eq(t, "State", got[0].State, core.TaskFailed)
		eq(t, "Error", got[0].Error, "worker lost 3 times while running this task")
		timePtrEq(t, "FinishedAt", got[0].FinishedAt, now)
	}
	d := Get(t, s, dependent.ID)
	eq(t, "dependent State", d.State, core.TaskFailed)
	eq(t, "dependent Error", d.Error, core.DependencyReason(poison.ID))
}

func testTaskRequeueLostExpiredLeases(t *testing.T, s store.Store, r Rules) {
	w1 := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	w2 := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertN(t, s, 2)
	a := Claim(t, s, w1, At(0), 1, 0)[0]              // lease until +30s
	b := Claim(t, s, w2, At(20*time.Second), 1, 0)[0] // lease until +50s

	got, err := r.TaskRequeueLost(t.Context(), s, &TaskRequeueLostParams{Now: At(25 * time.Second), ExpiredBefore: At(25 * time.Second)})
	noErr(t, "TaskRequeueLost", err)
	eq(t, "requeued before expiry", len(got), 0)

	got, err = r.TaskRequeueLost(t.Context(), s, &TaskRequeueLostParams{Now: At(40 * time.Second), ExpiredBefore: At(40 * time.Second)})
	noErr(t, "TaskRequeueLost", err)
	orderedIDs(t, "requeued", ids(got), []uuid.UUID{a.ID})
	eq(t, "State", got[0].State, core.TaskQueued)
	eq(t, "b untouched", Get(t, s, b.ID).State, core.TaskRunning)

	// Neither worker ids nor a horizon: nothing happens.
	got, err = r.TaskRequeueLost(t.Context(), s, &TaskRequeueLostParams{Now: At(time.Hour)})
	noErr(t, "TaskRequeueLost(nothing)", err)
	eq(t, "requeued(nothing)", len(got), 0)
	eq(t, "b still running", Get(t, s, b.ID).State, core.TaskRunning)
}

// testTaskOrphanAtAttemptLimit is the predecessor's bug: a task at its
// attempt limit whose worker died stayed "In Progress" forever.
func testTaskOrphanAtAttemptLimit(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	once := NewTask(MaxAttempts(1), MaxLost(2))
	twice := NewTask(MaxAttempts(2), MaxLost(2), Created(At(time.Second)))
	InsertTasks(t, s, once, twice)

	// Bring twice to failures = max_attempts-1.
	c := Claim(t, s, w, At(time.Minute), 2, 0)
	eq(t, "claimed", len(c), 2)
	var twiceLease core.Lease
	for _, task := range c {
		if task.ID == twice.ID {
			twiceLease = LeaseOf(t, task)
		}
	}
	got, err := r.TaskFail(t.Context(), s, &TaskFailParams{Now: At(time.Minute), WorkerID: w.ID, Lease: twiceLease, Error: "x", Retryable: true, RetryAt: At(time.Minute)})
	noErr(t, "TaskFail", err)
	eq(t, "twice failures", got.Failures, 1)
	eq(t, "twice state", got.State, core.TaskQueued)

	now := At(2 * time.Minute)
	for round := 0; ; round++ {
		if round > 10 {
			t.Fatalf("orphaned tasks never reached a final state")
		}
		Claim(t, s, w, now, 2, 0)
		now = now.Add(time.Minute)
		lost, err := r.TaskRequeueLost(t.Context(), s, &TaskRequeueLostParams{Now: now, WorkerIDs: []uuid.UUID{w.ID}})
		noErr(t, "TaskRequeueLost", err)
		for _, task := range lost {
			if task.State == core.TaskRunning {
				t.Fatalf("orphaned task still running after requeue: %s", taskSnapshot(task))
			}
		}
		if countState(t, s, core.TaskRunning) != 0 {
			t.Fatalf("tasks still running after their worker was lost")
		}
		if countState(t, s, core.TaskQueued) == 0 {
			break
		}
	}
	for _, id := range []uuid.UUID{once.ID, twice.ID} {
		task := Get(t, s, id)
		eq(t, "final state", task.State, core.TaskFailed)
		eq(t, "error", task.Error, "worker lost 2 times while running this task")
	}
}

func testTaskTimeoutRunning(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	retry := NewTask(func(task *core.Task) { task.Timeout = time.Minute })
	final := NewTask(MaxAttempts(1), func(task *core.Task) { task.Timeout = time.Minute })
	long := NewTask(func(task *core.Task) { task.Timeout = time.Hour })
	InsertTasks(t, s, retry, final, long)
	eq(t, "claimed", len(Claim(t, s, w, At(0), 3, 0)), 3)

	got, err := r.TaskTimeoutRunning(t.Context(), s, At(59*time.Second))
	noErr(t, "TaskTimeoutRunning(early)", err)
	eq(t, "timed out early", len(got), 0)

	now := At(61 * time.Second)
	got, err = r.TaskTimeoutRunning(t.Context(), s, now)
	noErr(t, "TaskTimeoutRunning", err)
	sameIDs(t, "timed out", ids(got), []uuid.UUID{retry.ID, final.ID})
	rt := Get(t, s, retry.ID)
	eq(t, "retry State", rt.State, core.TaskQueued)
	eq(t, "retry Failures", rt.Failures, 1)
	timeEq(t, "retry RunAfter", rt.RunAfter, now)
	if rt.LeaseToken != nil {
		t.Fatalf("timed-out task keeps its lease")
	}
	f := Get(t, s, final.ID)
	eq(t, "final State", f.State, core.TaskFailed)
	eq(t, "final Error", f.Error, core.ReasonTimeout)
	eq(t, "long State", Get(t, s, long.ID).State, core.TaskRunning)
}

func testTaskCancel(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	tasks := InsertN(t, s, 3)
	running := Claim(t, s, w, At(time.Minute), 1, 0)[0]
	eq(t, "claimed oldest", running.ID, tasks[0].ID)

	got, err := r.TaskCancel(t.Context(), s, tasks[1].ID, At(2*time.Minute))
	noErr(t, "TaskCancel(queued)", err)
	eq(t, "State", got.State, core.TaskCancelled)
	timePtrEq(t, "FinishedAt", got.FinishedAt, At(2*time.Minute))

	got, err = r.TaskCancel(t.Context(), s, running.ID, At(2*time.Minute))
	noErr(t, "TaskCancel(running)", err)
	eq(t, "State", got.State, core.TaskCancelled)
	if got.LeaseToken != nil {
		t.Fatalf("cancelled task keeps its lease")
	}
	// The holder's lease is now stale.
	lost, err := CompleteOne(t.Context(), s, &store.TaskCompleteParams{Now: At(3 * time.Minute), WorkerID: w.ID, Items: []store.TaskCompletion{{Lease: LeaseOf(t, running), Result: json.RawMessage(`{}`)}}})
	noErr(t, "TaskCompleteMany", err)
	eq(t, "lost", len(lost), 1)
	eq(t, "still cancelled", Get(t, s, running.ID).State, core.TaskCancelled)

	_, err = r.TaskCancel(t.Context(), s, running.ID, At(4*time.Minute))
	isErr(t, "TaskCancel(cancelled)", err, core.ErrConflict)
	c := Claim(t, s, w, At(5*time.Minute), 1, 0)[0]
	Complete(t, s, w, At(5*time.Minute), c)
	_, err = r.TaskCancel(t.Context(), s, c.ID, At(6*time.Minute))
	isErr(t, "TaskCancel(succeeded)", err, core.ErrConflict)
	eq(t, "succeeded untouched", Get(t, s, c.ID).State, core.TaskSucceeded)
	_, err = r.TaskCancel(t.Context(), s, uuid.New(), At(6*time.Minute))
	isErr(t, "TaskCancel(unknown)", err, core.ErrNotFound)
}

func testTaskRetry(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	task := InsertTasks(t, s, NewTask(MaxAttempts(1)))[0]
	c := Claim(t, s, w, At(time.Minute), 1, 0)[0]
	_, err := r.TaskFail(t.Context(), s, &TaskFailParams{Now: At(2 * time.Minute), WorkerID: w.ID, Lease: LeaseOf(t, c), Error: "boom"})
	noErr(t, "TaskFail", err)

	got, err := r.TaskRetry(t.Context(), s, task.ID, At(3*time.Minute))
	noErr(t, "TaskRetry", err)
	eq(t, "State", got.State, core.TaskQueued)
	eq(t, "Failures", got.Failures, 0)
	eq(t, "Lost", got.Lost, 0)
	eq(t, "Attempt kept", got.Attempt, 1)
	if got.FinishedAt != nil || got.LeaseToken != nil {
		t.Fatalf("retried task keeps final fields: %s", taskSnapshot(got))
	}
	_, err = r.TaskRetry(t.Context(), s, task.ID, At(3*time.Minute))
	isErr(t, "TaskRetry(queued)", err, core.ErrConflict)

	c = Claim(t, s, w, At(4*time.Minute), 1, 0)[0]
	eq(t, "Attempt", c.Attempt, 2)
	_, err = r.TaskCancel(t.Context(), s, task.ID, At(5*time.Minute))
	noErr(t, "TaskCancel", err)
	got, err = r.TaskRetry(t.Context(), s, task.ID, At(6*time.Minute))
	noErr(t, "TaskRetry(cancelled)", err)
	eq(t, "State", got.State, core.TaskQueued)
	_, err = r.TaskRetry(t.Context(), s, uuid.New(), At(6*time.Minute))
	isErr(t, "TaskRetry(unknown)", err, core.ErrNotFound)
}

func testTaskExpireQueued(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	old := NewTask(Created(At(0)), Priority(5))
	oldRunning := NewTask(Created(At(0)), Priority(10))
	dependent := NewTask(Created(At(8*24*time.Hour)), DependsOn(old.ID))
	fresh := NewTask(Created(At(8 * 24 * time.Hour)))
	InsertTasks(t, s, old, oldRunning, dependent, fresh)
	orderedIDs(t, "claim", ids(Claim(t, s, w, At(time.Second), 1, 0)), []uuid.UUID{oldRunning.ID})

	now := At(9 * 24 * time.Hour)
	n, err := r.TaskExpireQueued(t.Context(), s, now.Add(-core.DefaultQueueTTL), now)
	noErr(t, "TaskExpireQueued", err)
	eq(t, "expired", n, 1)
	o := Get(t, s, old.ID)
	eq(t, "old State", o.State, core.TaskFailed)
	eq(t, "old Error", o.Error, core.ReasonExpired)
	timePtrEq(t, "old FinishedAt", o.FinishedAt, now)
	d := Get(t, s, dependent.ID)
	eq(t, "dependent State", d.State, core.TaskFailed)
	eq(t, "dependent Error", d.Error, core.DependencyReason(old.ID))
	eq(t, "fresh State", Get(t, s, fresh.ID).State, core.TaskQueued)
	eq(t, "running State", Get(t, s, oldRunning.ID).State, core.TaskRunning)

	n, err = r.TaskExpireQueued(t.Context(), s, now.Add(-core.DefaultQueueTTL), now)
	noErr(t, "TaskExpireQueued(again)", err)
	eq(t, "expired again", n, 0)
}

// A claim whose worker never received it is undone without counting
// anything; a stale or foreign lease releases nothing.
func testTaskRelease(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	other := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertTasks(t, s, NewTask(), NewTask())
	claimed := Claim(t, s, w, At(time.Minute), 2, 0)
	eq(t, "claimed", len(claimed), 2)
	keep, give := claimed[0], claimed[1]

	n, err := s.TaskRelease(t.Context(), &store.TaskReleaseParams{Now: At(2 * time.Minute), Leases: []store.WorkerLease{
		{WorkerID: other.ID, Lease: LeaseOf(t, keep)},                           // another worker's claim
		{WorkerID: w.ID, Lease: core.Lease{TaskID: keep.ID, Token: uuid.New()}}, // stale token
		{WorkerID: w.ID, Lease: LeaseOf(t, give)},
	}})
	noErr(t, "TaskRelease", err)
	eq(t, "released", n, 1)

	got := Get(t, s, give.ID)
	eq(t, "released state", got.State, core.TaskQueued)
	eq(t, "released attempt", got.Attempt, 0)
	eq(t, "released lost", got.Lost, 0)
	eq(t, "released failures", got.Failures, 0)
	if got.WorkerID != nil || got.StartedAt != nil || got.LeaseExpiresAt != nil {
		t.Fatalf("released task keeps worker %v started %v lease %v", got.WorkerID, got.StartedAt, got.LeaseExpiresAt)
	}
	eq(t, "kept state", Get(t, s, keep.ID).State, core.TaskRunning)

	again := Claim(t, s, other, At(3*time.Minute), 1, 0)
	eq(t, "reclaimed", len(again), 1)
	eq(t, "reclaimed task", again[0].ID, give.ID)
	eq(t, "reclaimed attempt", again[0].Attempt, 1)
}
