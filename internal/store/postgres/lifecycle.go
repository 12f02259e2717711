package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// querier is what a pool and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// lostReasonFormat is core.ReasonLostFormat in PostgreSQL format() syntax.
var lostReasonFormat = strings.ReplaceAll(core.ReasonLostFormat, "%d", "%s")

// failDependents fails, transitively, every queued task that depends on one
// of ids, with error "dependency failed".
func failDependents(ctx context.Context, q querier, ids []uuid.UUID, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	// The error names the dependency that did not succeed (for a task
	// failed transitively, its own dependency that failed for this reason).
	_, err := q.Exec(ctx, `WITH RECURSIVE dep(id, via) AS (
			SELECT task_id, dep_id FROM task_deps WHERE dep_id = ANY($1::uuid[])
			UNION
			SELECT td.task_id, td.dep_id FROM task_deps td JOIN dep ON td.dep_id = dep.id
		), one AS (
			SELECT id, min(via::text) AS via FROM dep GROUP BY id
		)
		UPDATE tasks t SET state = 'failed', error = $2 || one.via || $4, finished_at = $3, updated_at = $3
		FROM one WHERE t.id = one.id AND t.state = 'queued'`,
		uuidStrings(ids), core.ReasonDependencyPrefix, now, core.ReasonDependencySuffix)
	if err != nil {
		return fmt.Errorf("fail dependents: %w", err)
	}
	return nil
}

// failedIDs returns the ids of the tasks in state failed.
func failedIDs(tasks []*core.Task) []uuid.UUID {
	var out []uuid.UUID
	for _, t := range tasks {
		if t.State == core.TaskFailed {
			out = append(out, t.ID)
		}
	}
	return out
}

// TaskLeaseRenew extends the leases still held; see store.Store.
func (s *Store) TaskLeaseRenew(ctx context.Context, params *store.TaskLeaseRenewParams) ([]core.Lease, error) {
	if len(params.Leases) == 0 {
		return nil, nil
	}
	workers := make([]string, len(params.Leases))
	tasks := make([]string, len(params.Leases))
	tokens := make([]string, len(params.Leases))
	for i, l := range params.Leases {
		workers[i], tasks[i], tokens[i] = l.WorkerID.String(), l.TaskID.String(), l.Token.String()
	}
	// Rows are locked in id order first, so two overlapping renewals (or a
	// renewal and a batched completion) cannot deadlock.
	var lost []core.Lease
	err := retryDeadlock(ctx, func() error {
		rows, err := s.pool.Query(ctx, `WITH input AS (
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) WITH ORDINALITY AS i(worker_id, id, token, ord)
		), locked AS (
			SELECT t.id FROM tasks t JOIN input i
			  ON t.id = i.id AND t.lease_token = i.token AND t.worker_id = i.worker_id
			WHERE t.id = ANY($2::uuid[]) AND t.state = 'running'
			ORDER BY t.id FOR UPDATE OF t
		), renewed AS (
			UPDATE tasks t SET lease_expires_at = $4
			WHERE t.id = ANY(ARRAY(SELECT id FROM locked))
			RETURNING t.id, t.lease_token, t.worker_id
		)
		SELECT i.id, i.token FROM input i
		WHERE NOT EXISTS (SELECT 1 FROM renewed r WHERE r.id = i.id AND r.lease_token = i.token AND r.worker_id = i.worker_id)
		ORDER BY i.ord`, workers, tasks, tokens, params.Until)
		if err != nil {
			return err
		}
		lost, err = collectLeases(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	return lost, nil
}

func collectLeases(rows pgx.Rows) ([]core.Lease, error) {
	defer rows.Close()
	var out []core.Lease
	for rows.Next() {
		var l core.Lease
		if err := rows.Scan(&l.TaskID, &l.Token); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// TaskRelease puts claimed-but-undelivered tasks back to queued.
func (s *Store) TaskRelease(ctx context.Context, params *store.TaskReleaseParams) (int, error) {
	if len(params.Leases) == 0 {
		return 0, nil
	}
	ids, tokens, workers := make([]string, len(params.Leases)), make([]string, len(params.Leases)), make([]string, len(params.Leases))
	for i, l := range params.Leases {
		ids[i], tokens[i], workers[i] = l.TaskID.String(), l.Token.String(), l.WorkerID.String()
	}
	var n int64
	err := retryDeadlock(ctx, func() error {
		tag, err := s.pool.Exec(ctx, `UPDATE tasks t SET state = 'queued', attempt = GREATEST(t.attempt - 1, 0),
				started_at = NULL, worker_id = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = $4
			FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS r(id, token, worker)
			WHERE t.id = r.id AND t.lease_token = r.token AND t.worker_id = r.worker AND t.state = 'running'`,
			ids, tokens, workers, params.Now)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("release tasks: %w", err)
	}
	return int(n), nil
}

// TaskProgress records progress for a held lease.
func (s *Store) TaskProgress(ctx context.Context, params *store.TaskProgressParams) error {
	tag, err := s.pool.Exec(ctx, `UPDATE tasks
		SET progress = COALESCE($3, progress), progress_msg = $4, updated_at = $5
		WHERE id = $1 AND lease_token = $2 AND state = 'running' AND worker_id = $6`,
		params.Lease.TaskID, params.Lease.Token, params.Progress, params.Message, params.Now, params.WorkerID)
	if err != nil {
		return fmt.Errorf("record progress of task %s: %w", params.Lease.TaskID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("record progress of task %s: %w", params.Lease.TaskID, core.ErrLeaseLost)
	}
	return nil
}

// TaskCompleteMany marks held tasks succeeded in one statement; see
// store.Store. A task is held when it is running under the presented token
// by params.WorkerID: a token presented by another worker is stale too.
func (s *Store) TaskCompleteMany(ctx context.Context, params *store.TaskCompleteManyParams) ([]core.Lease, error) {
	switch len(params.Items) {
	case 0:
		return nil, nil
	case 1:
		return s.completeOne(ctx, params)
	}
	var lost []core.Lease
	err := retryDeadlock(ctx, func() error {
		got, err := completeItems(ctx, s.pool, []*store.TaskCompleteManyParams{params})
		if err == nil {
			lost = got[0]
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("complete tasks: %w", err)
	}
	return lost, nil
}

// TaskCompleteBatch completes several workers' held tasks in one statement
// (one transaction); see store.Store.
func (s *Store) TaskCompleteBatch(ctx context.Context, params []*store.TaskCompleteManyParams) ([][]core.Lease, error) {
	var out [][]core.Lease
	err := retryDeadlock(ctx, func() error {
		var err error
		out, err = completeItems(ctx, s.pool, params)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("complete tasks of %d workers: %w", len(params), err)
	}
	return out, nil
}

// completeItems is the statement behind TaskCompleteMany and
// TaskCompleteBatch: every item of every params in one statement, rows
// locked in id order. It returns the stale leases of each params, in input
// order (never nil).
func completeItems(ctx context.Context, q querier, params []*store.TaskCompleteManyParams) ([][]core.Lease, error) {
	out := make([][]core.Lease, len(params))
	var (
		ids, tokens, workers []string
		results              []*string
		nows                 []time.Time
		owner                []int // index into params of each flattened item
		items                []core.Lease
	)
	for pi, p := range params {
		out[pi] = []core.Lease{}
		for _, it := range p.Items {
			ids = append(ids, it.Lease.TaskID.String())
			tokens = append(tokens, it.Lease.Token.String())
			workers = append(workers, p.WorkerID.String())
			nows = append(nows, p.Now)
			var r *string
			if it.Result != nil {
				str := string(it.Result)
				r = &str
			}
			results = append(results, r)
			owner = append(owner, pi)
			items = append(items, it.Lease)
		}
	}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `WITH input AS (
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::timestamptz[])
				WITH ORDINALITY AS i(id, token, result, worker, now, ord)
		), locked AS (
			SELECT t.id, i.token, i.result, i.worker, i.now FROM tasks t
			JOIN input i ON t.id = i.id AND t.lease_token = i.token AND t.worker_id = i.worker
			WHERE t.id = ANY($1::uuid[]) AND t.state = 'running'
			ORDER BY t.id FOR UPDATE OF t
		), done AS (
			UPDATE tasks t SET state = 'succeeded', result = l.result::json, error = '',
				finished_at = l.now, updated_at = l.now, lease_token = NULL, lease_expires_at = NULL
			FROM locked l WHERE t.id = l.id AND t.id = ANY($1::uuid[])
			RETURNING t.id, t.worker_id, l.now
		), deps AS (
			UPDATE tasks d SET deps_pending = d.deps_pending - c.n, updated_at = c.at
			FROM (SELECT td.task_id, count(*)::int AS n, max(done.now) AS at
			      FROM task_deps td JOIN done ON td.dep_id = done.id
			      GROUP BY td.task_id) c
			WHERE d.id = c.task_id AND d.state = 'queued'
			RETURNING d.id
		), wk AS (
			UPDATE workers w SET tasks_done = w.tasks_done + c.n, last_task_at = c.at
			FROM (SELECT worker_id, count(*)::int AS n, max(now) AS at FROM done
			      WHERE worker_id IS NOT NULL GROUP BY worker_id) c
			WHERE w.id = c.worker_id
			RETURNING w.id
		)
		SELECT i.ord FROM input i
		WHERE NOT EXISTS (SELECT 1 FROM locked l WHERE l.id = i.id AND l.token = i.token AND l.worker = i.worker)
		ORDER BY i.ord`, ids, tokens, results, workers, nows)
	if err != nil {
		return nil, err
	}
	ords, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	for _, o := range ords {
		k := int(o) - 1
		out[owner[k]] = append(out[owner[k]], items[k])
	}
	return out, nil
}

// completeOne is TaskCompleteMany for one item: the same effects in a
// smaller statement (no arrays, no lock ordering to take care of), which
// matters for agents that run one task at a time.
func (s *Store) completeOne(ctx context.Context, params *store.TaskCompleteManyParams) ([]core.Lease, error) {
	it := params.Items[0]
	var done int
	err := retryDeadlock(ctx, func() error {
		return s.pool.QueryRow(ctx, `WITH done AS (
				UPDATE tasks SET state = 'succeeded', result = $3::json, error = '',
					finished_at = $4, updated_at = $4, lease_token = NULL, lease_expires_at = NULL
				WHERE id = $1 AND lease_token = $2 AND worker_id = $5 AND state = 'running'
				RETURNING id, worker_id
			), deps AS (
				UPDATE tasks d SET deps_pending = d.deps_pending - 1, updated_at = $4
				FROM task_deps td, done
				WHERE td.dep_id = done.id AND d.id = td.task_id AND d.state = 'queued'
				RETURNING d.id
			), wk AS (
				UPDATE workers w SET tasks_done = w.tasks_done + 1, last_task_at = $4
				FROM done WHERE w.id = done.worker_id
				RETURNING w.id
			)
			SELECT count(*)::int FROM done`,
			it.Lease.TaskID, it.Lease.Token, jsonArg(it.Result), params.Now, params.WorkerID).Scan(&done)
	})
	if err != nil {
		return nil, fmt.Errorf("complete task %s: %w", it.Lease.TaskID, err)
	}
	if done == 0 {
		return []core.Lease{it.Lease}, nil
	}
	return nil, nil
}

// TaskFail records a handler failure for a held lease; see store.Store.
func (s *Store) TaskFail(ctx context.Context, params *store.TaskFailParams) (*core.Task, error) {
	retryAt := params.RetryAt
	if retryAt.IsZero() {
		retryAt = params.Now
	}
	var out *core.Task
	err := retryDeadlock(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			t, err := scanTask(tx.QueryRow(ctx, `WITH old AS (
				SELECT id, worker_id FROM tasks
				WHERE id = $1 AND lease_token = $2 AND state = 'running' AND worker_id = $7
				FOR UPDATE
			), upd AS (
				UPDATE tasks t SET
					failures = t.failures + 1,
					state = CASE WHEN $3 AND t.failures + 1 < t.max_attempts THEN 'queued' ELSE 'failed' END,
					run_after = CASE WHEN $3 AND t.failures + 1 < t.max_attempts THEN $4::timestamptz ELSE t.run_after END,
					finished_at = CASE WHEN $3 AND t.failures + 1 < t.max_attempts THEN NULL ELSE $5::timestamptz END,
					worker_id = CASE WHEN $3 AND t.failures + 1 < t.max_attempts THEN NULL ELSE t.worker_id END,
					error = $6, lease_token = NULL, lease_expires_at = NULL, updated_at = $5
				FROM old WHERE t.id = old.id
				RETURNING `+taskColsT+`
			), wk AS (
				UPDATE workers w SET tasks_failed = w.tasks_failed + 1, last_task_at = $5
				FROM old WHERE w.id = old.worker_id
				RETURNING w.id
			)
			SELECT `+taskCols+` FROM upd`,
				params.Lease.TaskID, params.Lease.Token, params.Retryable, retryAt, params.Now, params.Error, params.WorkerID))
			if errors.Is(err, pgx.ErrNoRows) {
				return core.ErrLeaseLost
			}
			if err != nil {
				return err
			}
			if t.State == core.TaskFailed {
				if err := failDependents(ctx, tx, []uuid.UUID{t.ID}, params.Now); err != nil {
					return err
				}
			}
			out = t
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("fail task %s: %w", params.Lease.TaskID, err)
	}
	return out, nil
}

// TaskRequeueLost requeues (or, past max_lost, fails) running tasks whose
// lease is lost; see store.Store.
func (s *Store) TaskRequeueLost(ctx context.Context, params *store.TaskRequeueLostParams) ([]*core.Task, error) {
	if len(params.WorkerIDs) == 0 && params.ExpiredBefore.IsZero() {
		return nil, nil
	}
	var out []*core.Task
	err := retryDeadlock(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `UPDATE tasks SET
				lost = lost + 1,
				state = CASE WHEN lost + 1 >= max_lost THEN 'failed' ELSE 'queued' END,
				error = CASE WHEN lost + 1 >= max_lost THEN format($3::text, lost + 1) ELSE error END,
				finished_at = CASE WHEN lost + 1 >= max_lost THEN $1::timestamptz ELSE NULL END,
				run_after = CASE WHEN lost + 1 >= max_lost THEN run_after ELSE $1::timestamptz END,
				worker_id = CASE WHEN lost + 1 >= max_lost THEN worker_id ELSE NULL END,
				lease_token = NULL, lease_expires_at = NULL, updated_at = $1
			WHERE state = 'running' AND (worker_id = ANY($2::uuid[]) OR lease_expires_at < $4::timestamptz)
			RETURNING `+taskCols,
				params.Now, uuidStrings(params.WorkerIDs), lostReasonFormat, nullTime(params.ExpiredBefore))
			if err != nil {
				return err
			}
			out, err = collectTasks(rows)
			if err != nil {
				return err
			}
			return failDependents(ctx, tx, failedIDs(out), params.Now)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("requeue lost tasks: %w", err)
	}
	sortByID(out)
	return out, nil
}

func sortByID(tasks []*core.Task) {
	slices.SortFunc(tasks, func(a, b *core.Task) int { return strings.Compare(a.ID.String(), b.ID.String()) })
}

// TaskTimeoutRunning fails every running task past its timeout as a
// retryable handler failure; see store.Store.
func (s *Store) TaskTimeoutRunning(ctx context.Context, now time.Time) ([]*core.Task, error) {
	var out []*core.Task
	err := retryDeadlock(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `WITH old AS (
				SELECT id, worker_id FROM tasks
				WHERE state = 'running' AND drover_task_deadline(started_at, timeout_ms) < $1
				ORDER BY id FOR UPDATE
			), upd AS (
				UPDATE tasks t SET
					failures = t.failures + 1,
					state = CASE WHEN t.failures + 1 < t.max_attempts THEN 'queued' ELSE 'failed' END,
					run_after = CASE WHEN t.failures + 1 < t.max_attempts THEN $1 ELSE t.run_after END,
					finished_at = CASE WHEN t.failures + 1 < t.max_attempts THEN NULL ELSE $1::timestamptz END,
					worker_id = CASE WHEN t.failures + 1 < t.max_attempts THEN NULL ELSE t.worker_id END,
					error = $2, lease_token = NULL, lease_expires_at = NULL, updated_at = $1
				FROM old WHERE t.id = old.id
				RETURNING `+taskColsT+`
			), wk AS (
				UPDATE workers w SET tasks_failed = w.tasks_failed + c.n, last_task_at = $1
				FROM (SELECT worker_id, count(*)::int AS n FROM old WHERE worker_id IS NOT NULL GROUP BY worker_id) c
				WHERE w.id = c.worker_id
				RETURNING w.id
			)
			SELECT `+taskCols+` FROM upd`, now, core.ReasonTimeout)
			if err != nil {
				return err
			}
			out, err = collectTasks(rows)
			if err != nil {
				return err
			}
			return failDependents(ctx, tx, failedIDs(out), now)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("time out running tasks: %w", err)
	}
	sortByID(out)
	return out, nil
}

// lockTaskState locks one task row and returns its state.
func lockTaskState(ctx context.Context, tx pgx.Tx, id uuid.UUID) (core.TaskState, error) {
	var st string
	err := tx.QueryRow(ctx, `SELECT state FROM tasks WHERE id = $1 FOR UPDATE`, id).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", core.ErrNotFound
	}
	return core.TaskState(st), err
}

// TaskCancel cancels a queued or running task and fails its dependents.
func (s *Store) TaskCancel(ctx context.Context, id uuid.UUID, now time.Time) (*core.Task, error) {
	var out *core.Task
	err := retryDeadlock(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			st, err := lockTaskState(ctx, tx, id)
			if err != nil {
				return err
			}
			if st.Terminal() {
				return fmt.Errorf("%w: task is already %s", core.ErrConflict, st)
			}
			out, err = scanTask(tx.QueryRow(ctx, `UPDATE tasks SET state = 'cancelled', error = $2,
				finished_at = $3, updated_at = $3, lease_token = NULL, lease_expires_at = NULL
			WHERE id = $1 RETURNING `+taskCols, id, core.ReasonCancelled, now))
			if err != nil {
				return err
			}
			return failDependents(ctx, tx, []uuid.UUID{id}, now)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("cancel task %s: %w", id, err)
	}
	return out, nil
}

// TaskRetry puts a failed or cancelled task back to queued with fresh
// counters. deps_pending is recomputed from the dependencies' states.
func (s *Store) TaskRetry(ctx context.Context, id uuid.UUID, now time.Time) (*core.Task, error) {
	var out *core.Task
	err := retryDeadlock(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			st, err := lockTaskState(ctx, tx, id)
			if err != nil {
				return err
			}
			if st != core.TaskFailed && st != core.TaskCancelled {
				return fmt.Errorf("%w: only failed or cancelled tasks can be retried, task is %s", core.ErrConflict, st)
			}
			out, err = scanTask(tx.QueryRow(ctx, `UPDATE tasks SET state = 'queued', failures = 0, lost = 0,
				error = '', result = NULL, progress = NULL, progress_msg = '', worker_id = NULL,
				lease_token = NULL, lease_expires_at = NULL, started_at = NULL, finished_at = NULL,
				run_after = $2, updated_at = $2,
				deps_pending = (SELECT count(*) FROM task_deps td JOIN tasks d ON d.id = td.dep_id
				                WHERE td.task_id = $1 AND d.state <> 'succeeded')
			WHERE id = $1 RETURNING `+taskCols, id, now))
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("retry task %s: %w", id, err)
	}
	return out, nil
}

// TaskExpireQueued fails queued tasks created before createdBefore with
// reason "expired", and their dependents.
func (s *Store) TaskExpireQueued(ctx context.Context, createdBefore, now time.Time) (int, error) {
	var n int
	err := retryDeadlock(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `UPDATE tasks SET state = 'failed', error = $2, finished_at = $3, updated_at = $3
			WHERE state = 'queued' AND created_at < $1 RETURNING id`, createdBefore, core.ReasonExpired, now)
			if err != nil {
				return err
			}
			expired, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
			if err != nil {
				return err
			}
			n = len(expired)
			return failDependents(ctx, tx, expired, now)
		})
	})
	if err != nil {
		return 0, fmt.Errorf("expire queued tasks: %w", err)
	}
	return n, nil
}
