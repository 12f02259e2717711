package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

func txCases() []suiteCase {
	return []suiteCase{
		{name: "TxTaskLockSelectors", fn: testTxTaskLockSelectors},
		{name: "TxTaskUpdateManyRoundTrip", fn: testTxTaskUpdateManyRoundTrip},
		{name: "TxDependents", fn: testTxDependents},
		{name: "TxWorkerCounters", fn: testTxWorkerCounters},
		{name: "TxRollback", fn: testTxRollback},
		{name: "Ping", fn: testPing},
	}
}

// lockIDs runs TaskLock in its own transaction and returns the ids.
func lockIDs(t *testing.T, s store.Store, p *store.TaskLockParams) []uuid.UUID {
	t.Helper()
	var out []uuid.UUID
	noErr(t, "Tx(TaskLock)", s.Tx(t.Context(), func(ctx context.Context, tx store.Tx) error {
		ts, err := tx.TaskLock(ctx, p)
		out = ids(ts)
		return err
	}))
	return out
}

func testTxTaskLockSelectors(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	old := InsertTasks(t, s, NewTask(Created(At(-time.Hour)), Pool("other")))[0]
	tasks := InsertN(t, s, 3)
	claimed := Claim(t, s, w, At(time.Minute), 1, 0) // 30 s lease, 1 h timeout
	eq(t, "claimed", len(claimed), 1)
	run := claimed[0]

	sameIDs(t, "by id", lockIDs(t, s, &store.TaskLockParams{IDs: []uuid.UUID{tasks[1].ID, uuid.New()}}), []uuid.UUID{tasks[1].ID})
	sameIDs(t, "by state", lockIDs(t, s, &store.TaskLockParams{State: core.TaskRunning}), []uuid.UUID{run.ID})
	sameIDs(t, "by worker", lockIDs(t, s, &store.TaskLockParams{State: core.TaskRunning, WorkerIDs: []uuid.UUID{w.ID}}), []uuid.UUID{run.ID})
	eq(t, "other worker", len(lockIDs(t, s, &store.TaskLockParams{State: core.TaskRunning, WorkerIDs: []uuid.UUID{uuid.New()}})), 0)
	eq(t, "lease not yet expired", len(lockIDs(t, s, &store.TaskLockParams{State: core.TaskRunning, LeaseExpiredBefore: At(time.Minute + 30*time.Second)})), 0)
	sameIDs(t, "lease expired", lockIDs(t, s, &store.TaskLockParams{State: core.TaskRunning, LeaseExpiredBefore: At(time.Minute + 31*time.Second)}), []uuid.UUID{run.ID})
	eq(t, "deadline not passed", len(lockIDs(t, s, &store.TaskLockParams{State: core.TaskRunning, DeadlineBefore: At(time.Hour + time.Minute)})), 0)
	sameIDs(t, "deadline passed", lockIDs(t, s, &store.TaskLockParams{State: core.TaskRunning, DeadlineBefore: At(time.Hour + time.Minute + time.Second)}), []uuid.UUID{run.ID})
	sameIDs(t, "created before", lockIDs(t, s, &store.TaskLockParams{State: core.TaskQueued, CreatedBefore: At(0)}), []uuid.UUID{old.ID})
	sameIDs(t, "any selector matches", lockIDs(t, s, &store.TaskLockParams{CreatedBefore: At(0), WorkerIDs: []uuid.UUID{w.ID}}), []uuid.UUID{old.ID, run.ID})
	got := lockIDs(t, s, &store.TaskLockParams{})
	eq(t, "everything", len(got), 4)
	orderedIDs(t, "id order", got, []uuid.UUID(sortedUUIDs(got)))
}

// sortedUUIDs returns ids sorted by their canonical text (byte order).
func sortedUUIDs(in []uuid.UUID) []uuid.UUID {
	out := make([]uuid.UUID, 0, len(in))
	for _, s := range sortedIDs(in) {
		out = append(out, uuid.MustParse(s))
	}
	return out
}

func testTxTaskUpdateManyRoundTrip(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	tasks := InsertN(t, s, 2)
	now := At(time.Minute)
	p := 0.5
	token := uuid.New()
	exp := At(2 * time.Minute)
	var want []*core.Task
	noErr(t, "Tx", s.Tx(t.Context(), func(ctx context.Context, tx store.Tx) error {
		ts, err := tx.TaskLock(ctx, &store.TaskLockParams{IDs: ids(tasks)})
		if err != nil {
			return err
		}
		a, b := ts[0], ts[1]
		a.State, a.Attempt, a.Failures, a.Lost, a.DepsPending = core.TaskRunning, 3, 2, 1, 0
		a.WorkerID, a.LeaseToken, a.LeaseExpiresAt = &w.ID, &token, &exp
		a.Progress, a.ProgressMsg, a.StartedAt, a.UpdatedAt = &p, "half", &now, now
		b.State, b.Result, b.Error, b.FinishedAt, b.RunAfter, b.UpdatedAt = core.TaskSucceeded, json.RawMessage(`{"ok":1}`), "", &now, now, now
		want = ts
		return tx.TaskUpdateMany(ctx, ts)
	}))
	for _, w := range want {
		eq(t, "stored = written", taskSnapshot(Get(t, s, w.ID)), taskSnapshot(w))
	}
}

func testTxDependents(t *testing.T, s store.Store) {
	a := InsertTasks(t, s, NewTask())[0]
	b := InsertTasks(t, s, NewTask())[0]
	c := InsertTasks(t, s, NewTask(DependsOn(a.ID, b.ID)))[0]
	d := InsertTasks(t, s, NewTask(DependsOn(c.ID)))[0]
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	Complete(t, s, w, At(time.Minute), Claim(t, s, w, At(time.Minute), 1, 0)...)
	noErr(t, "Tx", s.Tx(t.Context(), func(ctx context.Context, tx store.Tx) error {
		got, err := tx.TaskDependents(ctx, []uuid.UUID{a.ID, b.ID})
		if err != nil {
			return err
		}
		sameIDs(t, "dependents of a, b", got, []uuid.UUID{c.ID})
		got, err = tx.TaskDependents(ctx, []uuid.UUID{c.ID})
		if err != nil {
			return err
		}
		sameIDs(t, "dependents of c", got, []uuid.UUID{d.ID})
		n, err := tx.TaskDepsUnsucceeded(ctx, c.ID)
		if err != nil {
			return err
		}
		eq(t, "c waits on one", n, 1)
		return nil
	}))
}

func testTxWorkerCounters(t *testing.T, s store.Store) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	noErr(t, "Tx", s.Tx(t.Context(), func(ctx context.Context, tx store.Tx) error {
		return tx.WorkerCountersAdd(ctx, []store.WorkerCounters{
			{ID: w.ID, Done: 2, Failed: 1, LastTaskAt: At(time.Minute)},
			{ID: uuid.New(), Done: 1, LastTaskAt: At(time.Minute)},
		})
	}))
	got := GetWorker(t, s, w.ID)
	eq(t, "TasksDone", got.TasksDone, 2)
	eq(t, "TasksFailed", got.TasksFailed, 1)
	timePtrEq(t, "LastTaskAt", got.LastTaskAt, At(time.Minute))
}

func testTxRollback(t *testing.T, s store.Store) {
	task := InsertTasks(t, s, NewTask())[0]
	boom := errors.New("boom")
	err := s.Tx(t.Context(), func(ctx context.Context, tx store.Tx) error {
		ts, err := tx.TaskLock(ctx, &store.TaskLockParams{IDs: []uuid.UUID{task.ID}})
		if err != nil {
			return err
		}
		ts[0].State = core.TaskCancelled
		if err := tx.TaskUpdateMany(ctx, ts); err != nil {
			return err
		}
		return boom
	})
	isErr(t, "Tx", err, boom)
	eq(t, "rolled back", Get(t, s, task.ID).State, core.TaskQueued)
}

func testPing(t *testing.T, s store.Store) {
	noErr(t, "Ping", s.Ping(t.Context()))
}
