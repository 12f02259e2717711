package postgres

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// pgUUID is id as pgx encodes it cheapest: a []pgtype.UUID goes out as a
// binary uuid[] with one allocation per element, where a []uuid.UUID takes
// about twenty and a []string is first tried in binary (failing with an
// error that prints the whole slice), then sent as text.
func pgUUID(id uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }

// querier is what a pool and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// TaskLeaseRenew extends the leases still held; see store.Store.
func (s *Store) TaskLeaseRenew(ctx context.Context, params *store.TaskLeaseRenewParams) ([]core.Lease, error) {
	if len(params.Leases) == 0 {
		return nil, nil
	}
	// Each lease finds and locks its row by primary key (LATERAL), in task
	// id order, so two overlapping renewals (or a renewal and a batched
	// completion) cannot deadlock, and the cached generic plan cannot turn
	// a join of the leases with tasks into a quadratic loop (see
	// completeItems).
	leases := slices.Clone(params.Leases)
	slices.SortStableFunc(leases, func(a, b store.WorkerLease) int { return bytes.Compare(a.TaskID[:], b.TaskID[:]) })
	workers := make([]pgtype.UUID, len(leases))
	tasks := make([]pgtype.UUID, len(leases))
	tokens := make([]pgtype.UUID, len(leases))
	for i, l := range leases {
		workers[i], tasks[i], tokens[i] = pgUUID(l.WorkerID), pgUUID(l.TaskID), pgUUID(l.Token)
	}
	var lost []core.Lease
	err := retryDeadlock(ctx, func() error {
		lost = lost[:0]
		rows, err := s.pool.Query(ctx, `WITH locked AS (
			SELECT t.id, i.token, i.worker_id
			FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS i(worker_id, id, token),
			LATERAL (SELECT id FROM tasks
				WHERE id = i.id AND lease_token = i.token AND worker_id = i.worker_id AND (state = 'running') IS TRUE
				FOR UPDATE) t
		), renewed AS (
			UPDATE tasks t SET lease_expires_at = $4
			FROM locked l WHERE t.id = l.id AND t.state = 'running'
		)
		SELECT id, token, worker_id FROM locked`, workers, tasks, tokens, params.Until)
		if err != nil {
			return err
		}
		type held struct{ id, token, worker uuid.UUID }
		got := make(map[held]bool, len(leases))
		for rows.Next() {
			var h held
			if err := rows.Scan(&h.id, &h.token, &h.worker); err != nil {
				rows.Close()
				return err
			}
			got[h] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, l := range params.Leases {
			if !got[held{l.TaskID, l.Token, l.WorkerID}] {
				lost = append(lost, l.Lease)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	return lost, nil
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
			WHERE t.id = r.id AND t.lease_token = r.token AND t.worker_id = r.worker AND (t.state = 'running') IS TRUE`,
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

// TaskComplete marks held tasks succeeded, for any number of workers, in
// one statement; see store.Store. A task is held when it is running under
// the presented token by the item's worker: a token presented by another
// worker is stale too.
func (s *Store) TaskComplete(ctx context.Context, params []*store.TaskCompleteParams) ([][]core.Lease, error) {
	var out [][]core.Lease
	n := 0
	for _, p := range params {
		n += len(p.Items)
	}
	err := retryDeadlock(ctx, func() error {
		var err error
		if n == 1 {
			out, err = completeOne(ctx, s.pool, params)
		} else {
			out, err = completeItems(ctx, s.pool, params)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("complete tasks of %d workers: %w", len(params), err)
	}
	return out, nil
}

// joinedCompleteMax is the largest batch completeJoined completes.
const joinedCompleteMax = 64

// completeItems is the statement behind TaskComplete: every item of every
// params in one statement. It returns the stale leases of each params, in
// input order (never nil).
//
// Each item finds and locks its row with its own primary-key lookup (the
// LATERAL subquery), items sorted by task id so that concurrent batches
// lock in the same order. A join of the items with tasks instead let the
// cached generic plan (which guesses a handful of items) loop over the
// items for every row: quadratic, 8 s for 2,048 completions against 0.3 s
// now. The stale leases are the items that locked nothing, found in Go.
//
// The lookup tests the state as "(state = 'running') IS TRUE" (here, in
// lease renewals and in releases): written as a plain equality it matches
// the predicate of the partial index tasks_running_owner_pool, and when the
// statistics say few tasks run (taken while the queue was full, say) the
// planner looks each item up by scanning that whole index instead of the
// primary key: 2,048 completions cost 873 ms against 15 ms.
func completeItems(ctx context.Context, q querier, params []*store.TaskCompleteParams) ([][]core.Lease, error) {
	out := make([][]core.Lease, len(params))
	type item struct {
		pi     int
		worker uuid.UUID
		now    time.Time
		it     store.TaskCompletion
	}
	var items []item
	for pi, p := range params {
		out[pi] = []core.Lease{}
		for _, it := range p.Items {
			items = append(items, item{pi, p.WorkerID, p.Now, it})
		}
	}
	if len(items) == 0 {
		return out, nil
	}
	if len(items) <= joinedCompleteMax {
		return completeJoined(ctx, q, params)
	}
	slices.SortStableFunc(items, func(a, b item) int { return bytes.Compare(a.it.Lease.TaskID[:], b.it.Lease.TaskID[:]) })
	ids := make([]pgtype.UUID, len(items))
	tokens := make([]pgtype.UUID, len(items))
	workers := make([]pgtype.UUID, len(items))
	results := make([]*string, len(items))
	nows := make([]time.Time, len(items))
	for k, x := range items {
		ids[k], tokens[k], workers[k], nows[k] = pgUUID(x.it.Lease.TaskID), pgUUID(x.it.Lease.Token), pgUUID(x.worker), x.now
		if x.it.Result != nil {
			str := string(x.it.Result)
			results[k] = &str
		}
	}
	rows, err := q.Query(ctx, `WITH locked AS (
			SELECT t.id, i.token, i.worker, i.result, i.now
			FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::timestamptz[]) AS i(id, token, result, worker, now),
			LATERAL (SELECT id FROM tasks
				WHERE id = i.id AND lease_token = i.token AND worker_id = i.worker AND (state = 'running') IS TRUE
				FOR UPDATE) t
		), done AS (
			UPDATE tasks t SET state = 'succeeded', result = l.result::json, error = '',
				finished_at = l.now, updated_at = l.now, lease_token = NULL, lease_expires_at = NULL
			FROM locked l WHERE t.id = l.id AND t.state = 'running'
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
		SELECT id, token, worker FROM locked`, ids, tokens, results, workers, nows)
	if err != nil {
		return nil, err
	}
	type held struct{ id, token, worker uuid.UUID }
	got := make(map[held]bool, len(items))
	for rows.Next() {
		var h held
		if err := rows.Scan(&h.id, &h.token, &h.worker); err != nil {
			rows.Close()
			return nil, err
		}
		got[h] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Stale leases in input order.
	for pi, p := range params {
		for _, it := range p.Items {
			if !got[held{it.Lease.TaskID, it.Lease.Token, p.WorkerID}] {
				out[pi] = append(out[pi], it.Lease)
			}
		}
	}
	return out, nil
}

// completeJoined is completeItems for small batches (up to
// joinedCompleteMax items): the items are joined with tasks in one hash
// join, cheaper per row than one lookup per item. Its cached generic plan
// loops over the items for every row and re-sorts the id array for every
// probe of the update; both cost nothing at this size, and the id array
// keeps the update on primary-key lookups (joining on the locked rows and
// state = 'running' alone planned a scan of every running task).
func completeJoined(ctx context.Context, q querier, params []*store.TaskCompleteParams) ([][]core.Lease, error) {
	out := make([][]core.Lease, len(params))
	var (
		ids, tokens, workers []pgtype.UUID
		results              []*string
		nows                 []time.Time
		owner                []int // index into params of each flattened item
		items                []core.Lease
	)
	for pi, p := range params {
		out[pi] = []core.Lease{}
		for _, it := range p.Items {
			ids = append(ids, pgUUID(it.Lease.TaskID))
			tokens = append(tokens, pgUUID(it.Lease.Token))
			workers = append(workers, pgUUID(p.WorkerID))
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

// completeOne is TaskComplete for a single item: the same effects in a
// smaller statement (no arrays, no lock ordering to take care of), which
// matters for agents that run one task at a time.
func completeOne(ctx context.Context, q querier, params []*store.TaskCompleteParams) ([][]core.Lease, error) {
	out := make([][]core.Lease, len(params))
	var (
		p  *store.TaskCompleteParams
		at int
	)
	for i, pp := range params {
		out[i] = []core.Lease{}
		if len(pp.Items) == 1 {
			p, at = pp, i
		}
	}
	it := p.Items[0]
	var done int
	err := q.QueryRow(ctx, `WITH done AS (
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
		it.Lease.TaskID, it.Lease.Token, jsonArg(it.Result), p.Now, p.WorkerID).Scan(&done)
	if err != nil {
		return nil, err
	}
	if done == 0 {
		out[at] = append(out[at], it.Lease)
	}
	return out, nil
}
