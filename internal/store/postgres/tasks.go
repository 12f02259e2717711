package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// errRetryInsert makes TaskInsertMany start over after a concurrent insert
// took an idempotency key between our lookup and our insert.
var errRetryInsert = errors.New("idempotency key raced")

// TaskInsertMany inserts tasks in one transaction; see store.Store.
func (s *Store) TaskInsertMany(ctx context.Context, params *store.TaskInsertManyParams) ([]store.TaskInsertResult, error) {
	if len(params.Tasks) == 0 {
		return nil, nil
	}
	for range 3 {
		var res []store.TaskInsertResult
		err := retryDeadlock(ctx, func() error {
			var err error
			res, err = s.insertTasksTx(ctx, params)
			return err
		})
		if errors.Is(err, errRetryInsert) {
			continue
		}
		if err != nil {
			if _, ok := errors.AsType[*core.Error](err); ok {
				return nil, err
			}
			return nil, fmt.Errorf("insert tasks: %w", err)
		}
		return res, nil
	}
	return nil, fmt.Errorf("insert tasks: %w", errRetryInsert)
}

type idemKey struct{ owner, key string }

func (s *Store) insertTasks(ctx context.Context, tx *insertTx, params *store.TaskInsertManyParams) ([]store.TaskInsertResult, error) {
	tasks := params.Tasks
	n := len(tasks)
	field := func(i int, f string) string {
		if n == 1 {
			return f
		}
		return fmt.Sprintf("tasks[%d].%s", i, f)
	}

	// 1. Idempotency keys: earlier in the batch, then in the database.
	existingIdx := make([]int, n) // index of the batch task this one duplicates, or -1
	existingRow := make([]uuid.UUID, n)
	firstByKey := map[idemKey]int{}
	var keyOwners, keyKeys []string
	for i, t := range tasks {
		existingIdx[i] = -1
		if t.IdempotencyKey == "" {
			continue
		}
		k := idemKey{t.Owner, t.IdempotencyKey}
		if j, ok := firstByKey[k]; ok {
			existingIdx[i] = j
			continue
		}
		firstByKey[k] = i
		keyOwners = append(keyOwners, t.Owner)
		keyKeys = append(keyKeys, t.IdempotencyKey)
	}
	if len(keyOwners) > 0 {
		rows, err := tx.query(ctx, `SELECT t.id, t.owner, t.idempotency_key
			FROM tasks t JOIN unnest($1::text[], $2::text[]) AS k(owner, key)
			  ON t.owner = k.owner AND t.idempotency_key = k.key`, keyOwners, keyKeys)
		if err != nil {
			return nil, fmt.Errorf("look up idempotency keys: %w", err)
		}
		for rows.Next() {
			var (
				id         uuid.UUID
				owner, key string
			)
			if err := rows.Scan(&id, &owner, &key); err != nil {
				rows.Close()
				return nil, fmt.Errorf("look up idempotency keys: %w", err)
			}
			existingRow[firstByKey[idemKey{owner, key}]] = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("look up idempotency keys: %w", err)
		}
	}
	// resolved maps each batch task's id to the id that will exist after the
	// insert (itself, or the earlier task with the same idempotency key).
	resolved := make(map[uuid.UUID]uuid.UUID, n)
	batchIndex := make(map[uuid.UUID]int, n)
	finalID := make([]uuid.UUID, n)
	for i, t := range tasks {
		switch {
		case existingIdx[i] >= 0:
			finalID[i] = finalID[existingIdx[i]]
		case existingRow[i] != uuid.Nil:
			finalID[i] = existingRow[i]
		default:
			finalID[i] = t.ID
		}
		resolved[t.ID] = finalID[i]
		if _, ok := batchIndex[t.ID]; !ok {
			batchIndex[t.ID] = i
		}
	}
	inserting := func(i int) bool { return existingIdx[i] < 0 && existingRow[i] == uuid.Nil }

	// 2. Dependencies: on earlier batch tasks, or on existing rows that are
	// not failed or cancelled. Rows are locked FOR SHARE so a concurrent
	// completion or failure of a dependency waits for this insert and then
	// sees the new dependents.
	var external []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for i, t := range tasks {
		if !inserting(i) {
			continue
		}
		for _, d := range t.DependsOn {
			if j, ok := batchIndex[d]; ok && j < i && inserting(j) {
				continue
			}
			id := d
			if j, ok := batchIndex[d]; ok && j < i {
				id = resolved[d]
			}
			if !seen[id] {
				seen[id] = true
				external = append(external, id)
			}
		}
	}
	depState := map[uuid.UUID]core.TaskState{}
	if len(external) > 0 {
		rows, err := tx.query(ctx, `SELECT id, state FROM tasks WHERE id = ANY($1::uuid[]) ORDER BY id FOR SHARE`, uuidStrings(external))
		if err != nil {
			return nil, fmt.Errorf("look up dependencies: %w", err)
		}
		for rows.Next() {
			var (
				id uuid.UUID
				st string
			)
			if err := rows.Scan(&id, &st); err != nil {
				rows.Close()
				return nil, fmt.Errorf("look up dependencies: %w", err)
			}
			depState[id] = core.TaskState(st)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("look up dependencies: %w", err)
		}
	}

	// 3. Build the rows and the tasks the caller gets back (the row as
	// inserted: no read-back), then write them with COPY: one round trip
	// for the whole batch.
	var (
		depTask, depDep []uuid.UUID
		ownerSet        = map[string]bool{}
		ownerList       []string
		copyRows        []*core.Task
		cbTasks         []uuid.UUID
		cbURLs          []string
	)
	byID := make(map[uuid.UUID]*core.Task, n)
	for i, in := range tasks {
		if !inserting(i) {
			continue
		}
		pending := 0
		deps := make([]uuid.UUID, 0, len(in.DependsOn))
		dupDep := map[uuid.UUID]bool{}
		for _, d := range in.DependsOn {
			id := d
			if j, ok := batchIndex[d]; ok && j < i {
				id = resolved[d]
				if inserting(j) {
					pending++
					if !dupDep[id] {
						dupDep[id] = true
						deps = append(deps, id)
					}
					continue
				}
			}
			st, ok := depState[id]
			if !ok {
				return nil, core.Invalid(field(i, "depends_on"), "task %s does not exist (a dependency must be an existing task or an earlier task of the same batch)", d)
			}
			if st == core.TaskFailed || st == core.TaskCancelled {
				return nil, core.Invalid(field(i, "depends_on"), "task %s is %s, so the dependent could never run", d, st)
			}
			if dupDep[id] {
				continue
			}
			dupDep[id] = true
			deps = append(deps, id)
			if st != core.TaskSucceeded {
				pending++
			}
		}
		t := queuedTask(in, deps, pending, params.Now)
		for _, d := range deps {
			depTask = append(depTask, t.ID)
			depDep = append(depDep, d)
		}
		if !ownerSet[t.Owner] {
			ownerSet[t.Owner] = true
			ownerList = append(ownerList, t.Owner)
		}
		if i < len(params.CallbackURLs) && params.CallbackURLs[i] != "" {
			cbTasks = append(cbTasks, t.ID)
			cbURLs = append(cbURLs, params.CallbackURLs[i])
		}
		copyRows = append(copyRows, t)
		byID[t.ID] = t
	}
	if len(copyRows) > 0 {
		_, err := tx.copyTasks(ctx, copyRows)
		if err != nil {
			var pgErr *pgconn.PgError
			switch {
			case errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "tasks_owner_idempotency_key":
				// A concurrent transaction took an idempotency key since
				// the lookup: start over (the lookup will find it).
				return nil, errRetryInsert
			case isUniqueViolation(err):
				return nil, duplicateID(err, tasks, field)
			}
			return nil, fmt.Errorf("insert tasks: %w", err)
		}
	}
	// 4. Read back the existing tasks the caller gets (idempotency hits).
	var missing []string
	for i := range finalID {
		if _, ok := byID[finalID[i]]; !ok {
			missing = append(missing, finalID[i].String())
		}
	}
	if len(missing) > 0 {
		rows, err := tx.query(ctx, `SELECT `+taskCols+` FROM tasks WHERE id = ANY($1::uuid[])`, missing)
		if err != nil {
			return nil, fmt.Errorf("read existing tasks: %w", err)
		}
		got, err := collectTasks(rows)
		if err != nil {
			return nil, fmt.Errorf("read existing tasks: %w", err)
		}
		for _, t := range got {
			byID[t.ID] = t
		}
	}
	// 5. Dependencies, owners and callbacks, then COMMIT: one round trip.
	batch := &pgx.Batch{}
	if len(depTask) > 0 {
		batch.Queue(`INSERT INTO task_deps (task_id, dep_id)
			SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT DO NOTHING`, depTask, depDep)
	}
	if len(ownerList) > 0 {
		batch.Queue(`INSERT INTO owners (owner) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, ownerList)
	}
	if len(cbTasks) > 0 {
		batch.Queue(`INSERT INTO webhook_callbacks (task_id, url)
			SELECT * FROM unnest($1::uuid[], $2::text[]) ON CONFLICT (task_id) DO NOTHING`, cbTasks, cbURLs)
	}
	if err := tx.commit(ctx, batch); err != nil {
		return nil, fmt.Errorf("insert dependencies, owners and callbacks: %w", err)
	}

	res := make([]store.TaskInsertResult, n)
	for i := range tasks {
		t := byID[finalID[i]]
		if t == nil {
			return nil, fmt.Errorf("read inserted tasks: task %s missing", finalID[i])
		}
		res[i] = store.TaskInsertResult{Task: t, Existing: !inserting(i)}
	}
	return res, nil
}

// queuedTask is in as the row TaskInsertMany writes reads back: queued,
// with its resolved dependencies, run fields cleared, times at the
// database's microsecond precision and in UTC, the timeout in whole
// milliseconds.
func queuedTask(in *core.Task, deps []uuid.UUID, pending int, now time.Time) *core.Task {
	t := *in
	t.State = core.TaskQueued
	t.Attempt, t.Failures, t.Lost, t.DepsPending = 0, 0, 0, pending
	t.WorkerID, t.LeaseToken, t.LeaseExpiresAt, t.Result, t.Error = nil, nil, nil, nil, ""
	t.Progress, t.ProgressMsg, t.StartedAt, t.FinishedAt = nil, "", nil, nil
	t.DependsOn = nil
	if len(deps) > 0 {
		t.DependsOn = deps
	}
	if len(t.Params) == 0 {
		t.Params = json.RawMessage(`{}`)
	}
	t.CreatedAt = micro(orNow(t.CreatedAt, now))
	t.RunAfter = micro(orNow(t.RunAfter, now))
	t.UpdatedAt = micro(orNow(t.UpdatedAt, now))
	t.Timeout = t.Timeout.Truncate(time.Millisecond)
	return &t
}

// micro is t as PostgreSQL stores it: whole microseconds, in UTC.
func micro(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }

// duplicateID names the batch index whose id already exists, from the
// unique violation's detail ("Key (id)=(…) already exists").
func duplicateID(err error, tasks []*core.Task, field func(int, string) string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		for i, t := range tasks {
			if strings.Contains(pgErr.Detail, t.ID.String()) {
				return core.Invalid(field(i, "id"), "a task with this id already exists")
			}
		}
	}
	return core.Invalid(field(0, "id"), "a task with this id already exists")
}

func orNow(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t
}

// TaskGet returns one task or core.ErrNotFound.
func (s *Store) TaskGet(ctx context.Context, id uuid.UUID) (*core.Task, error) {
	t, err := scanTask(s.pool.QueryRow(ctx, `SELECT `+taskCols+` FROM tasks WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get task %s: %w", id, core.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get task %s: %w", id, err)
	}
	return t, nil
}

// TaskList lists tasks matching the filter, newest first.
func (s *Store) TaskList(ctx context.Context, params *store.TaskListParams) ([]*core.Task, error) {
	limit, err := store.ListLimit(params.Limit, store.DefaultTaskListLimit, store.MaxTaskListLimit)
	if err != nil {
		return nil, err
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if len(params.States) > 0 {
		st := make([]string, len(params.States))
		for i, s := range params.States {
			st[i] = string(s)
		}
		where = append(where, "state = ANY("+arg(st)+"::text[])")
	}
	if params.Owner != "" {
		where = append(where, "owner = "+arg(params.Owner))
	}
	if params.Pool != "" {
		where = append(where, "pool = "+arg(params.Pool))
	}
	if params.Type != "" {
		where = append(where, "type = "+arg(params.Type))
	}
	if params.WorkerID != nil {
		where = append(where, "worker_id = "+arg(*params.WorkerID))
	}
	if params.BeforeID != nil {
		where = append(where, "(created_at, id) < (SELECT created_at, id FROM tasks WHERE id = "+arg(*params.BeforeID)+")")
	}
	q := `SELECT ` + taskCols + ` FROM tasks`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC LIMIT " + arg(limit)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	out, err := collectTasks(rows)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return out, nil
}

// TaskCountByState returns the number of tasks per state.
func (s *Store) TaskCountByState(ctx context.Context) (map[core.TaskState]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT state, count(*) FROM tasks GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count tasks: %w", err)
	}
	defer rows.Close()
	out := map[core.TaskState]int{}
	for rows.Next() {
		var (
			st string
			n  int
		)
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
