// Package storetest is the conformance suite every store.Store backend must
// pass. SQLite runs it always; PostgreSQL runs it when
// DROVER_TEST_DATABASE_URL is set.
//
// The suite never reads the wall clock: every time-dependent call receives a
// Now derived from Base, so both backends see identical times.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// Base is the fixed time the suite starts from. Stores keep microsecond
// precision, so every time the suite uses is whole seconds from Base.
var Base = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

type suiteCase struct {
	name string
	// fn is a backend check; rule is a check of the task rules package
	// queue decides over the store (run by RunRules).
	fn   func(t *testing.T, s store.Store)
	rule func(t *testing.T, s store.Store, r Rules)
}

func allCases() []suiteCase {
	return slices.Concat(taskCases(), claimCases(), batchCases(), completeClaimCases(), lifecycleCases(), workerCases(), miscCases(), txCases(), reportingCases(), reportingEventCases(), outputCases(), webhookCases(), maintenanceCases())
}

// Run runs every backend conformance check as a PascalCase subtest, in
// parallel, each against its own store returned by open. open must return
// a fresh, migrated, empty store (its own database file or schema) and
// register its own cleanup (t.Cleanup) to close it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	for _, tc := range allCases() {
		if tc.fn == nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// RunRules runs the checks of the task rules (retry and backoff, attempts
// and max_lost, the dependency cascade, timeouts, queue TTL, cancel and
// retry) through r against stores returned by open, in parallel. Package
// queue runs it on every backend.
func RunRules(t *testing.T, open func(t *testing.T) store.Store, r Rules) {
	t.Helper()
	for _, tc := range allCases() {
		if tc.rule == nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.rule(t, open(t), r)
		})
	}
}

// Rules are the task rules that package queue decides over a store, in
// the shape the suite calls them. Each method runs in one store
// transaction.
type Rules interface {
	// TaskFail records a handler failure for a held lease.
	TaskFail(ctx context.Context, s store.Store, p *TaskFailParams) (*core.Task, error)
	// TaskRequeueLost requeues (or fails past max_lost) lost leases.
	TaskRequeueLost(ctx context.Context, s store.Store, p *TaskRequeueLostParams) ([]*core.Task, error)
	// TaskTimeoutRunning fails attempts past their timeout.
	TaskTimeoutRunning(ctx context.Context, s store.Store, now time.Time) ([]*core.Task, error)
	// TaskCancel cancels a queued or running task.
	TaskCancel(ctx context.Context, s store.Store, id uuid.UUID, now time.Time) (*core.Task, error)
	// TaskRetry puts a failed or cancelled task back in the queue.
	TaskRetry(ctx context.Context, s store.Store, id uuid.UUID, now time.Time) (*core.Task, error)
	// TaskExpireQueued expires queued tasks created before createdBefore.
	TaskExpireQueued(ctx context.Context, s store.Store, createdBefore, now time.Time) (int, error)
}

// TaskFailParams is the input of Rules.TaskFail.
type TaskFailParams struct {
	Now       time.Time
	WorkerID  uuid.UUID
	Lease     core.Lease
	Error     string
	Retryable bool
	// RetryAt is the run_after of the requeued task.
	RetryAt time.Time
}

// TaskRequeueLostParams is the input of Rules.TaskRequeueLost.
type TaskRequeueLostParams struct {
	Now           time.Time
	WorkerIDs     []uuid.UUID
	ExpiredBefore time.Time
}

// ClaimOne runs one claim through TaskClaim.
func ClaimOne(ctx context.Context, s store.Store, p *store.TaskClaimParams) ([]*core.Task, error) {
	got, err := s.TaskClaim(ctx, []*store.TaskClaimParams{p})
	if err != nil {
		return nil, err
	}
	return got[0], nil
}

// CompleteOne runs one worker's completions through TaskComplete.
func CompleteOne(ctx context.Context, s store.Store, p *store.TaskCompleteParams) ([]core.Lease, error) {
	got, err := s.TaskComplete(ctx, []*store.TaskCompleteParams{p})
	if err != nil {
		return nil, err
	}
	return got[0], nil
}

// At returns Base plus d.
func At(d time.Duration) time.Time { return Base.Add(d) }

// NewTask returns a fully defaulted queued task created at Base, as package
// queue would hand it to TaskInsertMany. mods adjust it.
func NewTask(mods ...func(*core.Task)) *core.Task {
	t := &core.Task{
		ID:          uuid.New(),
		Type:        "render",
		Params:      json.RawMessage(`{"n":1}`),
		Owner:       core.DefaultOwner,
		Priority:    0,
		Pool:        core.DefaultPool,
		MaxAttempts: core.DefaultMaxAttempts,
		MaxLost:     core.DefaultMaxLost,
		Timeout:     time.Hour,
		State:       core.TaskQueued,
		CreatedAt:   Base,
		RunAfter:    Base,
		UpdatedAt:   Base,
	}
	for _, m := range mods {
		m(t)
	}
	return t
}

// Created sets a task's CreatedAt, RunAfter and UpdatedAt to at.
func Created(at time.Time) func(*core.Task) {
	return func(t *core.Task) { t.CreatedAt, t.RunAfter, t.UpdatedAt = at, at, at }
}

// Owner sets a task's owner.
func Owner(o string) func(*core.Task) { return func(t *core.Task) { t.Owner = o } }

// Pool sets a task's pool.
func Pool(p string) func(*core.Task) { return func(t *core.Task) { t.Pool = p } }

// Priority sets a task's priority.
func Priority(p int) func(*core.Task) { return func(t *core.Task) { t.Priority = p } }

// DependsOn sets a task's dependencies.
func DependsOn(ids ...uuid.UUID) func(*core.Task) {
	return func(t *core.Task) { t.DependsOn = ids }
}

// MaxAttempts sets a task's max_attempts.
func MaxAttempts(n int) func(*core.Task) { return func(t *core.Task) { t.MaxAttempts = n } }

// MaxLost sets a task's max_lost.
func MaxLost(n int) func(*core.Task) { return func(t *core.Task) { t.MaxLost = n } }

// InsertTasks inserts tasks in one TaskInsertMany call at Base and fails the
// test on error. It returns the stored tasks in input order.
func InsertTasks(t testing.TB, s store.Store, tasks ...*core.Task) []*core.Task {
	t.Helper()
	res, err := s.TaskInsertMany(t.Context(), &store.TaskInsertManyParams{Now: Base, Tasks: tasks})
	if err != nil {
		t.Fatalf("TaskInsertMany: %v", err)
	}
	if len(res) != len(tasks) {
		t.Fatalf("TaskInsertMany returned %d results for %d tasks", len(res), len(tasks))
	}
	out := make([]*core.Task, len(res))
	for i, r := range res {
		out[i] = r.Task
	}
	return out
}

// InsertN inserts n default tasks (with mods) created one second apart from
// Base, in batches of at most 500.
func InsertN(t testing.TB, s store.Store, n int, mods ...func(*core.Task)) []*core.Task {
	t.Helper()
	var all []*core.Task
	for start := 0; start < n; start += 500 {
		end := min(start+500, n)
		batch := make([]*core.Task, 0, end-start)
		for i := start; i < end; i++ {
			batch = append(batch, NewTask(append([]func(*core.Task){Created(At(time.Duration(i) * time.Second))}, mods...)...))
		}
		all = append(all, InsertTasks(t, s, batch...)...)
	}
	return all
}

// NewWorker returns a worker of pool in state, created at Base.
func NewWorker(pool string, state core.WorkerState) *core.Worker {
	return &core.Worker{
		ID:             uuid.New(),
		Pool:           pool,
		Provider:       "sim",
		Placement:      pool + "/A100/eu",
		GPUType:        "A100",
		Region:         "eu",
		State:          state,
		TokenHash:      "abc123",
		Concurrency:    1,
		PricePerHour:   1.25,
		CreatedAt:      Base,
		StateChangedAt: Base,
	}
}

// InsertWorker inserts a worker of pool in state and returns it.
func InsertWorker(t testing.TB, s store.Store, pool string, state core.WorkerState) *core.Worker {
	t.Helper()
	w := NewWorker(pool, state)
	if err := s.WorkerInsert(t.Context(), w); err != nil {
		t.Fatalf("WorkerInsert: %v", err)
	}
	return w
}

// Claim claims up to max tasks of the default pool for w at now with a 30 s
// lease and the given owner limit.
func Claim(t testing.TB, s store.Store, w *core.Worker, now time.Time, max, ownerLimit int) []*core.Task {
	t.Helper()
	got, err := ClaimOne(t.Context(), s, &store.TaskClaimParams{
		Now: now, WorkerID: w.ID, Pool: w.Pool, Max: max,
		LeaseDuration: 30 * time.Second, OwnerLimit: ownerLimit,
	})
	if err != nil {
		t.Fatalf("TaskClaim: %v", err)
	}
	return got
}

// LeaseOf returns the lease of a claimed task.
func LeaseOf(t testing.TB, task *core.Task) core.Lease {
	t.Helper()
	if task.LeaseToken == nil {
		t.Fatalf("task %s has no lease token", task.ID)
	}
	return core.Lease{TaskID: task.ID, Token: *task.LeaseToken}
}

// Complete completes tasks held by w and fails on error or lost leases.
func Complete(t testing.TB, s store.Store, w *core.Worker, now time.Time, tasks ...*core.Task) {
	t.Helper()
	items := make([]store.TaskCompletion, len(tasks))
	for i, task := range tasks {
		items[i] = store.TaskCompletion{Lease: LeaseOf(t, task), Result: json.RawMessage(`{"ok":true}`)}
	}
	lost, err := CompleteOne(t.Context(), s, &store.TaskCompleteParams{Now: now, WorkerID: w.ID, Items: items})
	if err != nil {
		t.Fatalf("TaskCompleteMany: %v", err)
	}
	if len(lost) != 0 {
		t.Fatalf("TaskCompleteMany lost %d leases", len(lost))
	}
}

// Get returns a task and fails on error.
func Get(t testing.TB, s store.Store, id uuid.UUID) *core.Task {
	t.Helper()
	task, err := s.TaskGet(t.Context(), id)
	if err != nil {
		t.Fatalf("TaskGet(%s): %v", id, err)
	}
	return task
}

// GetWorker returns a worker and fails on error.
func GetWorker(t testing.TB, s store.Store, id uuid.UUID) *core.Worker {
	t.Helper()
	w, err := s.WorkerGet(t.Context(), id)
	if err != nil {
		t.Fatalf("WorkerGet(%s): %v", id, err)
	}
	return w
}

// --- small assertion helpers (the suite has no assertion dependency) ---

func eq[T comparable](t testing.TB, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func noErr(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func isErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error = %v, want %v", what, err, want)
	}
}

func invalid(t testing.TB, what string, err error, field string) {
	t.Helper()
	e, ok := errors.AsType[*core.Error](err)
	if !ok || e.Code != core.EINVALID {
		t.Fatalf("%s: error = %v, want EINVALID", what, err)
	}
	if !strings.Contains(e.Field+" "+e.Message, field) {
		t.Fatalf("%s: error %q does not name %q", what, e.Error(), field)
	}
}

func timeEq(t testing.TB, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
	if got.Location() != time.UTC {
		t.Fatalf("%s location = %v, want UTC", what, got.Location())
	}
}

func timePtrEq(t testing.TB, what string, got *time.Time, want time.Time) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s = nil, want %v", what, want)
	}
	timeEq(t, what, *got, want)
}

func jsonEq(t testing.TB, what string, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: invalid JSON %q: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		panic(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s = %s, want %s", what, got, want)
	}
}

func ids(tasks []*core.Task) []uuid.UUID {
	out := make([]uuid.UUID, len(tasks))
	for i, t := range tasks {
		out[i] = t.ID
	}
	return out
}

func sortedIDs(in []uuid.UUID) []string {
	out := make([]string, len(in))
	for i, id := range in {
		out[i] = id.String()
	}
	sort.Strings(out)
	return out
}

func sameIDs(t testing.TB, what string, got, want []uuid.UUID) {
	t.Helper()
	g, w := sortedIDs(got), sortedIDs(want)
	if !slices.Equal(g, w) {
		t.Fatalf("%s = %v, want %v", what, g, w)
	}
}

func orderedIDs(t testing.TB, what string, got, want []uuid.UUID) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func countState(t testing.TB, s store.Store, st core.TaskState) int {
	t.Helper()
	m, err := s.TaskCountByState(t.Context())
	noErr(t, "TaskCountByState", err)
	return m[st]
}

func totalTasks(t testing.TB, s store.Store) int {
	t.Helper()
	m, err := s.TaskCountByState(t.Context())
	noErr(t, "TaskCountByState", err)
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// taskSnapshot renders the persisted fields of a task for before/after
// comparisons.
func taskSnapshot(task *core.Task) string {
	c := *task
	c.DependsOn = nil
	var params, result any
	_ = json.Unmarshal(c.Params, &params)
	_ = json.Unmarshal(c.Result, &result)
	c.Params, c.Result = nil, nil
	tok := "<nil>"
	if c.LeaseToken != nil {
		tok = c.LeaseToken.String()
	}
	return fmt.Sprintf("%+v token=%s params=%v result=%v", fmtTask(c), tok, params, result)
}

func fmtTask(c core.Task) string {
	f := func(p *time.Time) string {
		if p == nil {
			return "nil"
		}
		return p.UTC().Format(time.RFC3339Nano)
	}
	w := "nil"
	if c.WorkerID != nil {
		w = c.WorkerID.String()
	}
	pr := "nil"
	if c.Progress != nil {
		pr = fmt.Sprint(*c.Progress)
	}
	return fmt.Sprintf("id=%s state=%s attempt=%d failures=%d lost=%d deps=%d worker=%s lease_exp=%s err=%q progress=%s msg=%q started=%s finished=%s run_after=%s updated=%s",
		c.ID, c.State, c.Attempt, c.Failures, c.Lost, c.DepsPending, w, f(c.LeaseExpiresAt), c.Error, pr, c.ProgressMsg,
		f(c.StartedAt), f(c.FinishedAt), c.RunAfter.UTC().Format(time.RFC3339Nano), c.UpdatedAt.UTC().Format(time.RFC3339Nano))
}

func ctxOf(t testing.TB) context.Context { return t.Context() }
