package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Tx runs fn in one transaction (READ COMMITTED, rows locked by TaskLock);
// see store.Store. A transaction aborted by a deadlock or a serialization
// failure runs again from the start.
func (s *Store) Tx(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	return retryDeadlock(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			return fn(ctx, &txn{tx: tx})
		})
	})
}

// Ping checks that the server answers and the schema is migrated (a read
// of the tasks table).
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.pool.QueryRow(ctx, `SELECT 1 FROM tasks LIMIT 1`).Scan(&one); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// txn implements store.Tx on one PostgreSQL transaction.
type txn struct{ tx pgx.Tx }

// TaskLock returns the tasks matching params, locked FOR UPDATE in id
// order (so two lockers cannot deadlock on each other); see store.Tx.
func (t *txn) TaskLock(ctx context.Context, params *store.TaskLockParams) ([]*core.Task, error) {
	var (
		where, anyOf []string
		args         []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(params.IDs) > 0 {
		where = append(where, "id = ANY("+arg(uuidStrings(params.IDs))+"::uuid[])")
	}
	if params.State != "" {
		// A literal, not a parameter, so the planner can use the partial
		// indexes (WHERE state = 'running' / 'queued').
		switch params.State {
		case core.TaskQueued, core.TaskRunning, core.TaskSucceeded, core.TaskFailed, core.TaskCancelled:
			where = append(where, "state = '"+string(params.State)+"'")
		default:
			return nil, core.Invalid("state", "unknown task state %q", params.State)
		}
	}
	if len(params.WorkerIDs) > 0 {
		anyOf = append(anyOf, "worker_id = ANY("+arg(uuidStrings(params.WorkerIDs))+"::uuid[])")
	}
	if !params.LeaseExpiredBefore.IsZero() {
		anyOf = append(anyOf, "lease_expires_at < "+arg(params.LeaseExpiredBefore))
	}
	if !params.DeadlineBefore.IsZero() {
		// The expression matches the tasks_running_deadline index.
		anyOf = append(anyOf, "drover_task_deadline(started_at, timeout_ms) < "+arg(params.DeadlineBefore))
	}
	if !params.CreatedBefore.IsZero() {
		anyOf = append(anyOf, "created_at < "+arg(params.CreatedBefore))
	}
	if len(anyOf) > 0 {
		where = append(where, "("+strings.Join(anyOf, " OR ")+")")
	}
	q := `SELECT ` + taskCols + ` FROM tasks`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY id FOR UPDATE`
	rows, err := t.tx.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("lock tasks: %w", err)
	}
	out, err := collectTasks(rows)
	if err != nil {
		return nil, fmt.Errorf("lock tasks: %w", err)
	}
	return out, nil
}

// TaskUpdateMany writes the run fields of tasks in one round trip; see
// store.Tx.
func (t *txn) TaskUpdateMany(ctx context.Context, tasks []*core.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, k := range tasks {
		b.Queue(`UPDATE tasks SET state = $2, attempt = $3, failures = $4, lost = $5, deps_pending = $6,
			worker_id = $7, lease_token = $8, lease_expires_at = $9, result = $10::json, error = $11,
			progress = $12, progress_msg = $13, run_after = $14, started_at = $15, finished_at = $16,
			updated_at = $17
			WHERE id = $1`, k.ID, string(k.State), k.Attempt, k.Failures, k.Lost, k.DepsPending,
			k.WorkerID, k.LeaseToken, k.LeaseExpiresAt, jsonArg(k.Result), k.Error,
			k.Progress, k.ProgressMsg, k.RunAfter, k.StartedAt, k.FinishedAt, k.UpdatedAt)
	}
	if err := t.tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("update %d tasks: %w", len(tasks), err)
	}
	return nil
}

// TaskDependents returns the queued direct dependents of ids; see store.Tx.
func (t *txn) TaskDependents(ctx context.Context, ids []uuid.UUID) ([]uuid.UUID, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := t.tx.Query(ctx, `SELECT DISTINCT d.task_id FROM task_deps d JOIN tasks k ON k.id = d.task_id
		WHERE k.state = 'queued' AND d.dep_id = ANY($1::uuid[]) ORDER BY d.task_id`, uuidStrings(ids))
	if err != nil {
		return nil, fmt.Errorf("task dependents: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("task dependents: %w", err)
	}
	return out, nil
}

// TaskDepsUnsucceeded counts the dependencies of id not succeeded.
func (t *txn) TaskDepsUnsucceeded(ctx context.Context, id uuid.UUID) (int, error) {
	var n int
	err := t.tx.QueryRow(ctx, `SELECT count(*)::int FROM task_deps d JOIN tasks p ON p.id = d.dep_id
		WHERE d.task_id = $1 AND p.state <> 'succeeded'`, id).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count unfinished dependencies: %w", err)
	}
	return n, nil
}

// WorkerCountersAdd adds to workers' task counters; see store.Tx.
func (t *txn) WorkerCountersAdd(ctx context.Context, counters []store.WorkerCounters) error {
	if len(counters) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, c := range counters {
		b.Queue(`UPDATE workers SET tasks_done = tasks_done + $2, tasks_failed = tasks_failed + $3,
			last_task_at = $4 WHERE id = $1`, c.ID, c.Done, c.Failed, c.LastTaskAt)
	}
	if err := t.tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("worker counters: %w", err)
	}
	return nil
}
