package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// This file holds every task rule that changes a task after its claim,
// decided once, in Go, inside one store transaction: the backends only lock
// rows, write them back and find dependents (store.Tx). Each function reads
// the rows it decides on locked, so concurrent callers serialise per task.

// FailParams is the input of FailTask.
type FailParams struct {
	Now       time.Time
	WorkerID  uuid.UUID
	Lease     core.Lease
	Error     string
	Retryable bool
	// Backoff returns the delay before the next attempt after the given
	// number of failures (counting this one); nil means no delay.
	Backoff func(failures int) time.Duration
}

// FailTask records a handler failure for a held lease (core.ErrLeaseLost if
// stale): failures+1; when Retryable and failures+1 < max_attempts the task
// returns to queued with run_after = Now + Backoff(failures+1), else it
// becomes failed and its queued dependents fail with "dependency failed"
// (transitively). The worker's tasks_failed and last_task_at are updated.
// It returns the task after the change.
func FailTask(ctx context.Context, st store.Store, p *FailParams) (*core.Task, error) {
	var out *core.Task
	err := st.Tx(ctx, func(ctx context.Context, tx store.Tx) error {
		out = nil
		ts, err := tx.TaskLock(ctx, &store.TaskLockParams{IDs: []uuid.UUID{p.Lease.TaskID}, State: core.TaskRunning})
		if err != nil {
			return err
		}
		if len(ts) == 0 || !holds(ts[0], p.WorkerID, p.Lease) {
			return core.ErrLeaseLost
		}
		t := ts[0]
		var delay time.Duration
		if p.Backoff != nil {
			delay = p.Backoff(t.Failures + 1)
		}
		failAttempt(t, p.Error, p.Retryable, p.Now.Add(delay), p.Now)
		if err := tx.TaskUpdateMany(ctx, []*core.Task{t}); err != nil {
			return err
		}
		if err := tx.WorkerCountersAdd(ctx, []store.WorkerCounters{{ID: p.WorkerID, Failed: 1, LastTaskAt: p.Now}}); err != nil {
			return err
		}
		if t.State == core.TaskFailed {
			if err := failDependents(ctx, tx, []uuid.UUID{t.ID}, p.Now); err != nil {
				return err
			}
		}
		out = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fail task %s: %w", p.Lease.TaskID, err)
	}
	return out, nil
}

// holds reports whether t is running under lease by worker.
func holds(t *core.Task, worker uuid.UUID, lease core.Lease) bool {
	return t.State == core.TaskRunning && t.LeaseToken != nil && *t.LeaseToken == lease.Token &&
		t.WorkerID != nil && *t.WorkerID == worker
}

// failAttempt applies one failed attempt to a running task: back to queued
// at retryAt when retryable with attempts left, else failed.
func failAttempt(t *core.Task, msg string, retryable bool, retryAt, now time.Time) {
	t.Failures++
	t.Error = msg
	t.LeaseToken, t.LeaseExpiresAt = nil, nil
	t.UpdatedAt = now
	if retryable && t.Failures < t.MaxAttempts {
		t.State = core.TaskQueued
		t.RunAfter = retryAt
		t.WorkerID = nil
		return
	}
	t.State = core.TaskFailed
	t.FinishedAt = &now
}

// RequeueLost requeues the running tasks whose lease is lost: those held
// by any worker in workerIDs, plus (when expiredBefore is not zero) those
// whose lease expired before it. Each gets lost+1; when lost+1 reaches
// max_lost it becomes failed with error core.ReasonLostFormat (and its
// dependents fail), else it is queued again with run_after = now and the
// lease cleared. It returns the tasks after the change, ordered by id.
func RequeueLost(ctx context.Context, st store.Store, now time.Time, workerIDs []uuid.UUID, expiredBefore time.Time) ([]*core.Task, error) {
	if len(workerIDs) == 0 && expiredBefore.IsZero() {
		return []*core.Task{}, nil
	}
	var out []*core.Task
	err := st.Tx(ctx, func(ctx context.Context, tx store.Tx) error {
		ts, err := tx.TaskLock(ctx, &store.TaskLockParams{
			State: core.TaskRunning, WorkerIDs: workerIDs, LeaseExpiredBefore: expiredBefore,
		})
		if err != nil {
			return err
		}
		var failed []uuid.UUID
		for _, t := range ts {
			t.Lost++
			t.LeaseToken, t.LeaseExpiresAt = nil, nil
			t.UpdatedAt = now
			if t.Lost >= t.MaxLost {
				t.State = core.TaskFailed
				t.Error = fmt.Sprintf(core.ReasonLostFormat, t.Lost)
				t.FinishedAt = &now
				failed = append(failed, t.ID)
			} else {
				t.State = core.TaskQueued
				t.RunAfter = now
				t.WorkerID = nil
			}
		}
		if err := tx.TaskUpdateMany(ctx, ts); err != nil {
			return err
		}
		if err := failDependents(ctx, tx, failed, now); err != nil {
			return err
		}
		out = ts
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("requeue lost tasks: %w", err)
	}
	if out == nil {
		out = []*core.Task{}
	}
	return out, nil
}

// TimeoutRunning fails every running task whose started_at + timeout is
// before now, as a retryable handler failure with error "timeout" (same
// rules as FailTask, retried at once). It returns the tasks after the
// change, ordered by id; callers tell the holding agents to kill them.
func TimeoutRunning(ctx context.Context, st store.Store, now time.Time) ([]*core.Task, error) {
	var out []*core.Task
	err := st.Tx(ctx, func(ctx context.Context, tx store.Tx) error {
		ts, err := tx.TaskLock(ctx, &store.TaskLockParams{State: core.TaskRunning, DeadlineBefore: now})
		if err != nil {
			return err
		}
		if err := failAttempts(ctx, tx, ts, core.ReasonTimeout, now); err != nil {
			return err
		}
		out = ts
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("time out tasks: %w", err)
	}
	if out == nil {
		out = []*core.Task{}
	}
	return out, nil
}

// CancelTask cancels a queued or running task (core.ErrNotFound if it does
// not exist, core.ErrConflict if it is already final) and fails its
// dependents. It returns the task after the change.
func CancelTask(ctx context.Context, st store.Store, id uuid.UUID, now time.Time) (*core.Task, error) {
	var out *core.Task
	err := st.Tx(ctx, func(ctx context.Context, tx store.Tx) error {
		t, err := lockOne(ctx, tx, id)
		if err != nil {
			return err
		}
		if t.State.Terminal() {
			return fmt.Errorf("it is already %s: %w", t.State, core.ErrConflict)
		}
		t.State = core.TaskCancelled
		t.Error = core.ReasonCancelled
		t.FinishedAt = &now
		t.LeaseToken, t.LeaseExpiresAt = nil, nil
		t.UpdatedAt = now
		if err := tx.TaskUpdateMany(ctx, []*core.Task{t}); err != nil {
			return err
		}
		out = t
		return failDependents(ctx, tx, []uuid.UUID{t.ID}, now)
	})
	if err != nil {
		return nil, fmt.Errorf("cancel task %s: %w", id, err)
	}
	return out, nil
}

// RetryTask puts a failed or cancelled task back to queued with fresh
// counters (attempt kept, failures and lost reset, run fields cleared,
// deps_pending recounted). core.ErrConflict if it is not failed or
// cancelled.
func RetryTask(ctx context.Context, st store.Store, id uuid.UUID, now time.Time) (*core.Task, error) {
	var out *core.Task
	err := st.Tx(ctx, func(ctx context.Context, tx store.Tx) error {
		t, err := lockOne(ctx, tx, id)
		if err != nil {
			return err
		}
		if t.State != core.TaskFailed && t.State != core.TaskCancelled {
			return fmt.Errorf("it is %s, not failed or cancelled: %w", t.State, core.ErrConflict)
		}
		pending, err := tx.TaskDepsUnsucceeded(ctx, id)
		if err != nil {
			return err
		}
		// Its next final state gets its own webhook (docs/outputs.md).
		if err := tx.WebhookRearm(ctx, id, now); err != nil {
			return err
		}
		t.State = core.TaskQueued
		t.Failures, t.Lost, t.DepsPending = 0, 0, pending
		t.Error, t.Result, t.Progress, t.ProgressMsg = "", nil, nil, ""
		t.WorkerID, t.LeaseToken, t.LeaseExpiresAt = nil, nil, nil
		t.StartedAt, t.FinishedAt = nil, nil
		t.RunAfter, t.UpdatedAt = now, now
		out = t
		return tx.TaskUpdateMany(ctx, []*core.Task{t})
	})
	if err != nil {
		return nil, fmt.Errorf("retry task %s: %w", id, err)
	}
	return out, nil
}

// ExpireQueued fails the queued tasks created before createdBefore with
// reason "expired", and their dependents. It returns how many expired.
func ExpireQueued(ctx context.Context, st store.Store, createdBefore, now time.Time) (int, error) {
	n := 0
	err := st.Tx(ctx, func(ctx context.Context, tx store.Tx) error {
		ts, err := tx.TaskLock(ctx, &store.TaskLockParams{State: core.TaskQueued, CreatedBefore: createdBefore})
		if err != nil {
			return err
		}
		ids := make([]uuid.UUID, len(ts))
		for i, t := range ts {
			t.State = core.TaskFailed
			t.Error = core.ReasonExpired
			t.FinishedAt = &now
			t.UpdatedAt = now
			ids[i] = t.ID
		}
		if err := tx.TaskUpdateMany(ctx, ts); err != nil {
			return err
		}
		n = len(ts)
		return failDependents(ctx, tx, ids, now)
	})
	if err != nil {
		return 0, fmt.Errorf("expire queued tasks: %w", err)
	}
	return n, nil
}

// lockOne locks one task by id (core.ErrNotFound if absent).
func lockOne(ctx context.Context, tx store.Tx, id uuid.UUID) (*core.Task, error) {
	ts, err := tx.TaskLock(ctx, &store.TaskLockParams{IDs: []uuid.UUID{id}})
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, core.ErrNotFound
	}
	return ts[0], nil
}

// failDependents is the dependency cascade: every queued task that depends
// on one of ids fails with core.DependencyReason naming the dependency that
// did not succeed (for a task failed transitively, its own dependency that
// failed this way), and so on transitively.
func failDependents(ctx context.Context, tx store.Tx, ids []uuid.UUID, now time.Time) error {
	for len(ids) > 0 {
		// via maps each dependent to the first failed dependency found for
		// it; one lookup per failed task keeps the reason exact.
		via := make(map[uuid.UUID]uuid.UUID)
		var deps []uuid.UUID
		for _, id := range ids {
			ds, err := tx.TaskDependents(ctx, []uuid.UUID{id})
			if err != nil {
				return fmt.Errorf("fail dependents of task %s: %w", id, err)
			}
			for _, d := range ds {
				if _, seen := via[d]; !seen {
					via[d] = id
					deps = append(deps, d)
				}
			}
		}
		if len(deps) == 0 {
			return nil
		}
		ts, err := tx.TaskLock(ctx, &store.TaskLockParams{IDs: deps, State: core.TaskQueued})
		if err != nil {
			return fmt.Errorf("fail dependents: %w", err)
		}
		ids = ids[:0:0]
		for _, t := range ts {
			t.State = core.TaskFailed
			t.Error = core.DependencyReason(via[t.ID])
			t.FinishedAt = &now
			t.UpdatedAt = now
			ids = append(ids, t.ID)
		}
		if err := tx.TaskUpdateMany(ctx, ts); err != nil {
			return fmt.Errorf("fail dependents: %w", err)
		}
	}
	return nil
}

// failAttempts fails the current attempt of every task in ts (all locked,
// running) as a retryable failure with reason, in tx: the task rows, the
// holding workers' failure counters and the dependency cascade of tasks
// that became final. Timeouts and stalls share it.
func failAttempts(ctx context.Context, tx store.Tx, ts []*core.Task, reason string, now time.Time) error {
	if len(ts) == 0 {
		return nil
	}
	var failed []uuid.UUID
	perWorker := map[uuid.UUID]int{}
	var order []uuid.UUID
	for _, t := range ts {
		if t.WorkerID != nil {
			if perWorker[*t.WorkerID] == 0 {
				order = append(order, *t.WorkerID)
			}
			perWorker[*t.WorkerID]++
		}
		failAttempt(t, reason, true, now, now)
		if t.State == core.TaskFailed {
			failed = append(failed, t.ID)
		}
	}
	if err := tx.TaskUpdateMany(ctx, ts); err != nil {
		return err
	}
	counters := make([]store.WorkerCounters, 0, len(order))
	for _, id := range order {
		counters = append(counters, store.WorkerCounters{ID: id, Failed: perWorker[id], LastTaskAt: now})
	}
	if err := tx.WorkerCountersAdd(ctx, counters); err != nil {
		return err
	}
	return failDependents(ctx, tx, failed, now)
}
