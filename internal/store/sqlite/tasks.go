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
		// The rows are written at the end, several per statement.
		var rows, depRows, ownerRows, cbRows [][]any
		var rowIdx []int
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
			rows = append(rows, []any{t.ID.String(), t.Type, string(t.Params), t.Owner, t.Priority, t.Pool, t.MaxAttempts, t.MaxLost,
				t.Timeout.Milliseconds(), nullString(t.IdempotencyKey), pending,
				micros(t.CreatedAt), micros(t.RunAfter), micros(t.UpdatedAt)})
			rowIdx = append(rowIdx, i)
			for _, dep := range deps {
				depRows = append(depRows, []any{t.ID.String(), dep.String()})
			}
			if i < len(params.CallbackURLs) && params.CallbackURLs[i] != "" {
				cbRows = append(cbRows, []any{t.ID.String(), params.CallbackURLs[i]})
			}
			if !owners[t.Owner] {
				owners[t.Owner] = true
				ownerRows = append(ownerRows, []any{t.Owner})
			}
			batch[t.ID] = core.TaskQueued
			if t.IdempotencyKey != "" {
				byKey[[2]string{t.Owner, t.IdempotencyKey}] = &t
			}
			results[i] = store.TaskInsertResult{Task: &t}
		}
		if err := s.insertRows(ctx, tx, insertTaskSQL, rows); err != nil {
			if strings.Contains(err.Error(), "UNIQUE constraint failed: tasks.id") {
				return duplicateID(ctx, tx, rows, rowIdx, field)
			}
			return fmt.Errorf("insert tasks: %w", err)
		}
		if err := s.insertRows(ctx, tx, insertDepsSQL, depRows); err != nil {
			return fmt.Errorf("insert tasks: insert dependencies: %w", err)
		}
		if err := s.insertRows(ctx, tx, insertOwnersSQL, ownerRows); err != nil {
			return fmt.Errorf("insert tasks: record owners: %w", err)
		}
		if err := s.insertRows(ctx, tx, insertCallbacksSQL, cbRows); err != nil {
			return fmt.Errorf("insert tasks: record callbacks: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// insertTaskSQL starts the multi-row task insert.
const insertTaskSQL = `INSERT INTO tasks (id, type, params, owner, priority, pool, max_attempts, max_lost,
	timeout_ms, idempotency_key, state, deps_pending, created_at, run_after, updated_at) VALUES `

// insertRowsPerStatement bounds the rows of one multi-row INSERT (14
// parameters a task row: well under SQLite's 32,766 variables).
const insertRowsPerStatement = 500

// insertRows inserts rows with multi-row INSERT statements of up to
// insertRowsPerStatement rows; full-size statements are prepared once per
// store, the remainder per call.
// A task row gets 'queued' for its state column. Owner rows that exist are
// skipped.
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, head string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	width := len(rows[0])
	one := "(" + placeholders(width) + ")"
	if head == insertTaskSQL {
		// state is the 11th column, a constant.
		one = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)"
	}
	tail := ""
	if head != insertTaskSQL {
		tail = " ON CONFLICT DO NOTHING"
	}
	for start := 0; start < len(rows); start += insertRowsPerStatement {
		chunk := rows[start:min(start+insertRowsPerStatement, len(rows))]
		q := head + strings.TrimSuffix(strings.Repeat(one+", ", len(chunk)), ", ") + tail
		st, shared, err := s.multiRowStmt(ctx, tx, q, len(chunk) == insertRowsPerStatement)
		if err != nil {
			return err
		}
		args := make([]any, 0, len(chunk)*width)
		for _, r := range chunk {
			args = append(args, r...)
		}
		_, err = st.ExecContext(ctx, args...)
		if !shared {
			_ = st.Close()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// multiRowStmt returns q prepared for tx: from the statements prepared
// after Migrate when q is one of them (keep), else prepared for this call.
// (Preparing on the writer pool here would wait for the connection tx
// holds.)
func (s *Store) multiRowStmt(ctx context.Context, tx *sql.Tx, q string, keep bool) (*sql.Stmt, bool, error) {
	if keep {
		if st, ok := s.multiRow.Load(q); ok {
			return tx.StmtContext(ctx, st.(*sql.Stmt)), true, nil
		}
	}
	st, err := tx.PrepareContext(ctx, q)
	return st, false, err
}

// multiRowSQL is the full-size multi-row insert for head.
func multiRowSQL(head string, width int) string {
	one := "(" + placeholders(width) + ")"
	if head == insertTaskSQL {
		// state is the 11th column, a constant.
		one = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)"
	}
	tail := ""
	if head != insertTaskSQL {
		tail = " ON CONFLICT DO NOTHING"
	}
	return head + strings.TrimSuffix(strings.Repeat(one+", ", insertRowsPerStatement), ", ") + tail
}

// multiRowHeads are the multi-row inserts and their row widths.
var multiRowHeads = map[string]int{insertTaskSQL: 14, insertDepsSQL: 2, insertOwnersSQL: 1, insertCallbacksSQL: 2}

const (
	insertDepsSQL      = `INSERT INTO task_deps (task_id, dep_id) VALUES `
	insertOwnersSQL    = `INSERT INTO owners (owner) VALUES `
	insertCallbacksSQL = `INSERT INTO webhook_callbacks (task_id, url) VALUES `
)

// duplicateID names the batch index whose id already exists.
func duplicateID(ctx context.Context, tx *sql.Tx, rows [][]any, rowIdx []int, field func(int, string) string) error {
	for k, r := range rows {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM tasks WHERE id = ?`, r[0]).Scan(&one)
		if err == nil {
			return core.Invalid(field(rowIdx[k], "id"), "task %s already exists", r[0])
		}
	}
	return core.Invalid(field(rowIdx[0], "id"), "a task id of the batch already exists")
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
