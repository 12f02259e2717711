package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

const taskCols = `id, type, params, owner, priority, pool, max_attempts, max_lost, timeout_ms,
	idempotency_key, state, attempt, failures, lost, deps_pending, worker_id, lease_token,
	lease_expires_at, result, error, progress, progress_msg, created_at, run_after, started_at,
	finished_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanTask(sc scanner) (*core.Task, error) {
	var (
		t                              core.Task
		id, state                      string
		params, result                 []byte
		timeoutMS                      int64
		idem, workerID, token          sql.NullString
		leaseExp, started, finished    sql.NullInt64
		progress                       sql.NullFloat64
		createdAt, runAfter, updatedAt int64
	)
	err := sc.Scan(&id, &t.Type, &params, &t.Owner, &t.Priority, &t.Pool, &t.MaxAttempts, &t.MaxLost, &timeoutMS,
		&idem, &state, &t.Attempt, &t.Failures, &t.Lost, &t.DepsPending, &workerID, &token,
		&leaseExp, &result, &t.Error, &progress, &t.ProgressMsg, &createdAt, &runAfter, &started,
		&finished, &updatedAt)
	if err != nil {
		return nil, err
	}
	if t.ID, err = uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("parse task id %q: %w", id, err)
	}
	t.Params = json.RawMessage(params)
	if len(result) > 0 {
		t.Result = json.RawMessage(result)
	}
	t.Timeout = time.Duration(timeoutMS) * time.Millisecond
	t.IdempotencyKey = idem.String
	t.State = core.TaskState(state)
	if t.WorkerID, err = parseNullUUID(workerID); err != nil {
		return nil, err
	}
	if t.LeaseToken, err = parseNullUUID(token); err != nil {
		return nil, err
	}
	t.LeaseExpiresAt = ptrTime(leaseExp)
	if progress.Valid {
		p := progress.Float64
		t.Progress = &p
	}
	t.CreatedAt = fromMicros(createdAt)
	t.RunAfter = fromMicros(runAfter)
	t.StartedAt = ptrTime(started)
	t.FinishedAt = ptrTime(finished)
	t.UpdatedAt = fromMicros(updatedAt)
	return &t, nil
}

func collectTasks(rows *sql.Rows, err error) ([]*core.Task, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*core.Task{}
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func getTask(ctx context.Context, q querier, id uuid.UUID) (*core.Task, error) {
	t, err := scanTask(q.QueryRowContext(ctx, `SELECT `+taskCols+` FROM tasks WHERE id = ?`, id.String()))
	if isNoRows(err) {
		return nil, core.ErrNotFound
	}
	return t, err
}

// TaskInsertMany inserts tasks in one transaction; see store.Store.
func (s *Store) TaskInsertMany(ctx context.Context, params *store.TaskInsertManyParams) ([]store.TaskInsertResult, error) {
	results := make([]store.TaskInsertResult, len(params.Tasks))
	field := func(i int, name string) string {
		if len(params.Tasks) > 1 {
			return fmt.Sprintf("tasks[%d].%s", i, name)
		}
		return name
	}
	err := s.inTx(ctx, "insert tasks", func(tx *sql.Tx) error {
		// states of tasks seen in this batch (inserted or returned as existing)
		batch := make(map[uuid.UUID]core.TaskState, len(params.Tasks))
		byKey := map[[2]string]*core.Task{}
		owners := map[string]bool{}
		for i, in := range params.Tasks {
			if in.IdempotencyKey != "" {
				k := [2]string{in.Owner, in.IdempotencyKey}
				if prev, ok := byKey[k]; ok {
					results[i] = store.TaskInsertResult{Task: prev, Existing: true}
					continue
				}
				prev, err := scanTask(tx.QueryRowContext(ctx, `SELECT `+taskCols+` FROM tasks WHERE owner = ? AND idempotency_key = ?`, in.Owner, in.IdempotencyKey))
				switch {
				case err == nil:
					byKey[k] = prev
					batch[prev.ID] = prev.State
					results[i] = store.TaskInsertResult{Task: prev, Existing: true}
					continue
				case !isNoRows(err):
					return fmt.Errorf("insert tasks: look up idempotency key: %w", err)
				}
			}
			deps := make([]uuid.UUID, 0, len(in.DependsOn))
			seen := map[uuid.UUID]bool{}
			pending := 0
			for _, dep := range in.DependsOn {
				if seen[dep] {
					continue
				}
				seen[dep] = true
				st, ok := batch[dep]
				if !ok {
					var s string
					err := tx.QueryRowContext(ctx, `SELECT state FROM tasks WHERE id = ?`, dep.String()).Scan(&s)
					if isNoRows(err) {
						return core.Invalid(field(i, "depends_on"), "task %s does not exist", dep)
					}
					if err != nil {
						return fmt.Errorf("insert tasks: look up dependency: %w", err)
					}
					st = core.TaskState(s)
				}
				if st == core.TaskFailed || st == core.TaskCancelled {
					return core.Invalid(field(i, "depends_on"), "task %s is %s, so this task could never run", dep, st)
				}
				if st != core.TaskSucceeded {
					pending++
				}
				deps = append(deps, dep)
			}
			t := *in
			t.State = core.TaskQueued
			t.Attempt, t.Failures, t.Lost, t.DepsPending = 0, 0, 0, pending
			t.WorkerID, t.LeaseToken, t.LeaseExpiresAt, t.Result, t.Error = nil, nil, nil, nil, ""
			t.Progress, t.ProgressMsg, t.StartedAt, t.FinishedAt = nil, "", nil, nil
			t.DependsOn = deps
			if len(t.Params) == 0 {
				t.Params = json.RawMessage(`{}`)
			}
			t.CreatedAt, t.RunAfter, t.UpdatedAt = truncTime(t.CreatedAt), truncTime(t.RunAfter), truncTime(t.UpdatedAt)
			t.Timeout = t.Timeout.Truncate(time.Millisecond)
			_, err := s.execNamed(ctx, tx, "insertTask",
				t.ID.String(), t.Type, string(t.Params), t.Owner, t.Priority, t.Pool, t.MaxAttempts, t.MaxLost,
				t.Timeout.Milliseconds(), nullString(t.IdempotencyKey), pending,
				micros(t.CreatedAt), micros(t.RunAfter), micros(t.UpdatedAt))
			if err != nil {
				if strings.Contains(err.Error(), "UNIQUE constraint failed: tasks.id") {
					return core.Invalid(field(i, "id"), "task %s already exists", t.ID)
				}
				return fmt.Errorf("insert tasks: insert %s: %w", t.ID, err)
			}
			for _, dep := range deps {
				if _, err := s.execNamed(ctx, tx, "insertDep", t.ID.String(), dep.String()); err != nil {
					return fmt.Errorf("insert tasks: insert dependency: %w", err)
				}
			}
			if !owners[t.Owner] {
				owners[t.Owner] = true
				if _, err := s.execNamed(ctx, tx, "insertOwner", t.Owner); err != nil {
					return fmt.Errorf("insert tasks: record owner: %w", err)
				}
			}
			batch[t.ID] = core.TaskQueued
			if t.IdempotencyKey != "" {
				byKey[[2]string{t.Owner, t.IdempotencyKey}] = &t
			}
			results[i] = store.TaskInsertResult{Task: &t}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// TaskGet returns one task with its DependsOn, or core.ErrNotFound.
func (s *Store) TaskGet(ctx context.Context, id uuid.UUID) (*core.Task, error) {
	t, err := getTask(ctx, s.rdb, id)
	if err != nil {
		if err == core.ErrNotFound {
			return nil, err
		}
		return nil, fmt.Errorf("get task %s: %w", id, err)
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT dep_id FROM task_deps WHERE task_id = ? ORDER BY dep_id`, id.String())
	if err != nil {
		return nil, fmt.Errorf("get task %s: dependencies: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("get task %s: dependencies: %w", id, err)
		}
		dep, err := uuid.Parse(d)
		if err != nil {
			return nil, fmt.Errorf("get task %s: dependency id %q: %w", id, d, err)
		}
		t.DependsOn = append(t.DependsOn, dep)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("get task %s: dependencies: %w", id, err)
	}
	return t, nil
}

// TaskList lists tasks newest first; see store.TaskListParams.
func (s *Store) TaskList(ctx context.Context, params *store.TaskListParams) ([]*core.Task, error) {
	limit, err := store.ListLimit(params.Limit, store.DefaultTaskListLimit, store.MaxTaskListLimit)
	if err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if len(params.States) > 0 {
		where = append(where, "state IN ("+placeholders(len(params.States))+")")
		for _, st := range params.States {
			args = append(args, string(st))
		}
	}
	for _, f := range []struct{ col, val string }{{"owner", params.Owner}, {"pool", params.Pool}, {"type", params.Type}} {
		if f.val != "" {
			where = append(where, f.col+" = ?")
			args = append(args, f.val)
		}
	}
	if params.WorkerID != nil {
		where = append(where, "worker_id = ?")
		args = append(args, params.WorkerID.String())
	}
	if params.BeforeID != nil {
		var created int64
		err := s.rdb.QueryRowContext(ctx, `SELECT created_at FROM tasks WHERE id = ?`, params.BeforeID.String()).Scan(&created)
		if isNoRows(err) {
			return nil, core.Invalid("before_id", "task %s does not exist", *params.BeforeID)
		}
		if err != nil {
			return nil, fmt.Errorf("list tasks: page anchor: %w", err)
		}
		where = append(where, "(created_at < ? OR (created_at = ? AND id < ?))")
		args = append(args, created, created, params.BeforeID.String())
	}
	q := `SELECT ` + taskCols + ` FROM tasks`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, limit)
	out, err := collectTasks(s.rdb.QueryContext(ctx, q, args...))
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return out, nil
}

// TaskCountByState counts tasks per state.
func (s *Store) TaskCountByState(ctx context.Context) (map[core.TaskState]int, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT state, count(*) FROM tasks GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count tasks: %w", err)
	}
	defer rows.Close()
	out := map[core.TaskState]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count tasks: %w", err)
		}
		out[core.TaskState(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count tasks: %w", err)
	}
	return out, nil
}

// failDependents fails the queued dependents of ids, transitively, with
// core.ReasonDependency.
func failDependents(ctx context.Context, tx *sql.Tx, ids []string, now time.Time) error {
	for len(ids) > 0 {
		var next []string
		for start := 0; start < len(ids); start += chunkSize {
			chunk := ids[start:min(start+chunkSize, len(ids))]
			// The error names the dependency that did not succeed.
			args := []any{core.ReasonDependencyPrefix}
			for _, id := range chunk {
				args = append(args, id)
			}
			args = append(args, core.ReasonDependencySuffix, micros(now), micros(now))
			for _, id := range chunk {
				args = append(args, id)
			}
			rows, err := tx.QueryContext(ctx, `UPDATE tasks SET state = 'failed',
				error = ? || (SELECT dep_id FROM task_deps WHERE task_id = tasks.id AND dep_id IN (`+placeholders(len(chunk))+`) ORDER BY dep_id LIMIT 1) || ?,
				finished_at = ?, updated_at = ?
				WHERE state = 'queued' AND id IN (SELECT task_id FROM task_deps WHERE dep_id IN (`+placeholders(len(chunk))+`))
				RETURNING id`, args...)
			if err != nil {
				return fmt.Errorf("fail dependents: %w", err)
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return fmt.Errorf("fail dependents: %w", err)
				}
				next = append(next, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("fail dependents: %w", err)
			}
		}
		ids = next
	}
	return nil
}

func taskIDs(tasks []*core.Task) []string {
	out := make([]string, len(tasks))
	for i, t := range tasks {
		out[i] = t.ID.String()
	}
	return out
}
