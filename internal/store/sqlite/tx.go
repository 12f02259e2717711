package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// Tx runs fn in one BEGIN IMMEDIATE transaction; see store.Store. SQLite
// has one writer, so the rows fn reads are as good as locked.
func (s *Store) Tx(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	return s.inTx(ctx, "transaction", func(tx *sql.Tx) error {
		return fn(ctx, &txn{tx: tx})
	})
}

// Ping checks that the database answers and is migrated (a read of the
// tasks table on the reader pool).
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.rdb.QueryRowContext(ctx, `SELECT 1 FROM tasks LIMIT 1`).Scan(&one); err != nil && !isNoRows(err) {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	return nil
}

// txn implements store.Tx on one SQLite transaction.
type txn struct{ tx *sql.Tx }

// TaskLock returns the tasks matching params; see store.Tx.
func (t *txn) TaskLock(ctx context.Context, params *store.TaskLockParams) ([]*core.Task, error) {
	var (
		where, anyOf []string
		args         []any
	)
	if params.State != "" {
		// A literal, not a parameter: the partial indexes (WHERE state =
		// 'running' / 'queued') are only used when the query names the
		// state itself.
		lit, err := stateLiteral(params.State)
		if err != nil {
			return nil, err
		}
		where = append(where, "state = "+lit)
	}
	if len(params.WorkerIDs) > 0 {
		anyOf = append(anyOf, "worker_id IN ("+placeholders(len(params.WorkerIDs))+")")
		args = append(args, uuidArgs(params.WorkerIDs)...)
	}
	if !params.LeaseExpiredBefore.IsZero() {
		anyOf = append(anyOf, "lease_expires_at < ?")
		args = append(args, micros(params.LeaseExpiredBefore))
	}
	if !params.DeadlineBefore.IsZero() {
		// The expression matches the tasks_running_deadline index.
		anyOf = append(anyOf, "started_at + timeout_ms * 1000 < ?")
		args = append(args, micros(params.DeadlineBefore))
	}
	if !params.CreatedBefore.IsZero() {
		anyOf = append(anyOf, "created_at < ?")
		args = append(args, micros(params.CreatedBefore))
	}
	if len(anyOf) > 0 {
		where = append(where, "("+strings.Join(anyOf, " OR ")+")")
	}
	if len(params.IDs) == 0 {
		return t.lockWhere(ctx, where, args)
	}
	var out []*core.Task
	for start := 0; start < len(params.IDs); start += chunkSize {
		chunk := params.IDs[start:min(start+chunkSize, len(params.IDs))]
		w := append(slices.Clone(where), "id IN ("+placeholders(len(chunk))+")")
		got, err := t.lockWhere(ctx, w, append(slices.Clone(args), uuidArgs(chunk)...))
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	sortByID(out)
	return out, nil
}

func (t *txn) lockWhere(ctx context.Context, where []string, args []any) ([]*core.Task, error) {
	q := `SELECT ` + taskCols + ` FROM tasks`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	// Sorted in Go: an ORDER BY id would tempt SQLite to walk the primary
	// key instead of the (partial) index that finds the few rows.
	ts, err := collectTasks(t.tx.QueryContext(ctx, q, args...))
	if err != nil {
		return nil, fmt.Errorf("lock tasks: %w", err)
	}
	sortByID(ts)
	return ts, nil
}

// TaskUpdateMany writes the run fields of tasks; see store.Tx.
func (t *txn) TaskUpdateMany(ctx context.Context, tasks []*core.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	st, err := t.tx.PrepareContext(ctx, `UPDATE tasks SET state = ?, attempt = ?, failures = ?, lost = ?,
		deps_pending = ?, worker_id = ?, lease_token = ?, lease_expires_at = ?, result = ?, error = ?,
		progress = ?, progress_msg = ?, run_after = ?, started_at = ?, finished_at = ?, updated_at = ?
		WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("update tasks: %w", err)
	}
	defer st.Close()
	for _, k := range tasks {
		var progress any
		if k.Progress != nil {
			progress = *k.Progress
		}
		if _, err := st.ExecContext(ctx, string(k.State), k.Attempt, k.Failures, k.Lost, k.DepsPending,
			nullUUID(k.WorkerID), nullUUID(k.LeaseToken), nullMicros(k.LeaseExpiresAt), nullJSON(k.Result), k.Error,
			progress, k.ProgressMsg, micros(k.RunAfter), nullMicros(k.StartedAt), nullMicros(k.FinishedAt),
			micros(k.UpdatedAt), k.ID.String()); err != nil {
			return fmt.Errorf("update task %s: %w", k.ID, err)
		}
	}
	return nil
}

// TaskDependents returns the queued direct dependents of ids; see store.Tx.
func (t *txn) TaskDependents(ctx context.Context, ids []uuid.UUID) ([]uuid.UUID, error) {
	var out []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for start := 0; start < len(ids); start += chunkSize {
		chunk := ids[start:min(start+chunkSize, len(ids))]
		rows, err := t.tx.QueryContext(ctx, `SELECT DISTINCT d.task_id FROM task_deps d JOIN tasks k ON k.id = d.task_id
			WHERE k.state = 'queued' AND d.dep_id IN (`+placeholders(len(chunk))+`)`, uuidArgs(chunk)...)
		if err != nil {
			return nil, fmt.Errorf("task dependents: %w", err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				rows.Close()
				return nil, fmt.Errorf("task dependents: %w", err)
			}
			id, err := uuid.Parse(s)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("task dependents: %w", err)
			}
			if !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("task dependents: %w", err)
		}
	}
	sortUUIDs(out)
	return out, nil
}

// TaskDepsUnsucceeded counts the dependencies of id not succeeded.
func (t *txn) TaskDepsUnsucceeded(ctx context.Context, id uuid.UUID) (int, error) {
	var n int
	err := t.tx.QueryRowContext(ctx, `SELECT count(*) FROM task_deps d JOIN tasks p ON p.id = d.dep_id
		WHERE d.task_id = ? AND p.state <> 'succeeded'`, id.String()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count unfinished dependencies: %w", err)
	}
	return n, nil
}

// WorkerCountersAdd adds to workers' task counters; see store.Tx.
func (t *txn) WorkerCountersAdd(ctx context.Context, counters []store.WorkerCounters) error {
	for _, c := range counters {
		if _, err := t.tx.ExecContext(ctx, `UPDATE workers SET tasks_done = tasks_done + ?, tasks_failed = tasks_failed + ?,
			last_task_at = ? WHERE id = ?`, c.Done, c.Failed, micros(c.LastTaskAt), c.ID.String()); err != nil {
			return fmt.Errorf("worker %s counters: %w", c.ID, err)
		}
	}
	return nil
}

// stateLiteral returns st as an SQL string literal; st must be a known
// task state.
func stateLiteral(st core.TaskState) (string, error) {
	switch st {
	case core.TaskQueued, core.TaskRunning, core.TaskSucceeded, core.TaskFailed, core.TaskCancelled:
		return "'" + string(st) + "'", nil
	}
	return "", core.Invalid("state", "unknown task state %q", st)
}

func sortByID(ts []*core.Task) {
	slices.SortFunc(ts, func(a, b *core.Task) int { return bytes.Compare(a.ID[:], b.ID[:]) })
}

func sortUUIDs(ids []uuid.UUID) {
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
}
