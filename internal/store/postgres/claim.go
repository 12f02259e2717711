package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// MaxClaim is the largest Max a single TaskClaim accepts.
const MaxClaim = 1000

// maxOwnerRounds bounds the rounds of an owner-limited claim: each round
// after the first only happens because some owner hit its limit (and is
// excluded from then on), so a handful of rounds fill a claim in practice.
const maxOwnerRounds = 8

// claimSet is the SET list shared by both claim paths ($now and $expires
// are bound by the caller's query).
const claimSet = `state = 'running', attempt = t.attempt + 1, worker_id = @worker,
	lease_token = gen_random_uuid(), lease_expires_at = @expires, started_at = @now,
	updated_at = @now, progress = NULL, progress_msg = ''`

// TaskClaim atomically claims up to Max claimable tasks for a worker; see
// store.Store.
func (s *Store) TaskClaim(ctx context.Context, params *store.TaskClaimParams) ([]*core.Task, error) {
	if params.Max < 1 || params.Max > MaxClaim {
		return nil, core.Invalid("max", "must be between 1 and %d, got %d", MaxClaim, params.Max)
	}
	if params.LeaseDuration <= 0 {
		return nil, core.Invalid("lease_duration", "must be positive, got %s", params.LeaseDuration)
	}
	var (
		out []*core.Task
		err error
	)
	if params.OwnerLimit > 0 {
		out, err = s.claimOwnerLimited(ctx, params)
	} else {
		out, err = s.claimUnlimited(ctx, params)
	}
	if err != nil {
		return nil, fmt.Errorf("claim tasks for worker %s: %w", params.WorkerID, err)
	}
	slices.SortFunc(out, claimOrder)
	return out, nil
}

// claimOrder is the claim order: priority descending, then created_at, then
// id (byte order, which is also the order of the canonical string).
func claimOrder(a, b *core.Task) int {
	if a.Priority != b.Priority {
		return b.Priority - a.Priority
	}
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID.String(), b.ID.String())
}

// claimUnlimited is the one-statement claim without an owner limit. The
// worker row is locked FOR SHARE in the same statement. The outer UPDATE
// finds the picked rows through id = ANY(ARRAY(...)), which always plans as
// a primary-key lookup (a join with the CTE can plan as a scan of the whole
// table when statistics are stale).
func (s *Store) claimUnlimited(ctx context.Context, p *store.TaskClaimParams) ([]*core.Task, error) {
	rows, err := s.pool.Query(ctx, `WITH w AS (
			SELECT id FROM workers WHERE id = @worker AND state IN ('booting', 'ready') FOR SHARE
		), picked AS (
			SELECT id FROM tasks
			WHERE state = 'queued' AND pool = @pool AND run_after <= @now AND deps_pending = 0
			  AND EXISTS (SELECT 1 FROM w)
			ORDER BY priority DESC, created_at, id
			LIMIT @max
			FOR UPDATE SKIP LOCKED
		)
		UPDATE tasks t SET `+claimSet+`
		WHERE t.id = ANY(ARRAY(SELECT id FROM picked))
		RETURNING `+taskColsT, pgx.NamedArgs{
		"worker": p.WorkerID, "pool": p.Pool, "now": p.Now, "max": p.Max,
		"expires": p.Now.Add(p.LeaseDuration),
	})
	if err != nil {
		return nil, err
	}
	out, err := collectTasks(rows)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		// Tell an unknown worker apart from an idle queue.
		var st string
		err := s.pool.QueryRow(ctx, `SELECT state FROM workers WHERE id = $1`, p.WorkerID).Scan(&st)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, core.ErrNotFound
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// claimOwnerLimited claims under a per-owner running limit, exactly under
// concurrency:
//
//  1. lock the worker row FOR SHARE and check its state;
//  2. read which owners at the head of the queue are already at their
//     limit (a snapshot; only a pre-filter, so a saturated owner's tasks do
//     not crowd out others);
//  3. lock candidate tasks FOR UPDATE SKIP LOCKED, excluding those owners;
//  4. lock the candidates' owner rows, sorted, FOR UPDATE (later rounds use
//     SKIP LOCKED so they never wait while holding locks out of order);
//  5. count the running tasks of those owners in a new statement: under
//     READ COMMITTED it sees every commit of a previous lock holder;
//  6. grant at most limit-running per owner, in claim order.
//
// Owners that hit their limit are excluded and the claim goes round again
// until it has Max tasks or the queue has nothing more.
func (s *Store) claimOwnerLimited(ctx context.Context, p *store.TaskClaimParams) ([]*core.Task, error) {
	var out []*core.Task
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var st string
		err := tx.QueryRow(ctx, `SELECT state FROM workers WHERE id = $1 FOR SHARE`, p.WorkerID).Scan(&st)
		if errors.Is(err, pgx.ErrNoRows) {
			return core.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("lock worker: %w", err)
		}
		if ws := core.WorkerState(st); ws != core.WorkerBooting && ws != core.WorkerReady {
			return nil
		}

		// Owners at their limit among those at the head of the queue (twice
		// the claim's size); each count stops at the limit, so this costs
		// O(head owners × limit) whatever the size of the running set.
		rows, err := tx.Query(ctx, `SELECT h.owner FROM (
				SELECT DISTINCT owner FROM (
					SELECT owner FROM tasks
					WHERE state = 'queued' AND pool = $1 AND run_after <= $2 AND deps_pending = 0
					ORDER BY priority DESC, created_at, id
					LIMIT $3
				) head
			) h
			WHERE (SELECT count(*) FROM (
				SELECT 1 FROM tasks r WHERE r.state = 'running' AND r.owner = h.owner LIMIT $4
			) c) >= $4`, p.Pool, p.Now, 2*p.Max, p.OwnerLimit)
		if err != nil {
			return fmt.Errorf("read saturated owners: %w", err)
		}
		excluded, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("read saturated owners: %w", err)
		}
		if excluded == nil {
			excluded = []string{}
		}

		lockedOwners := map[string]bool{}
		expires := p.Now.Add(p.LeaseDuration)
		for round := 0; round < maxOwnerRounds && len(out) < p.Max; round++ {
			want := p.Max - len(out)
			type cand struct {
				id    uuid.UUID
				owner string
			}
			rows, err := tx.Query(ctx, `SELECT id, owner FROM tasks
				WHERE state = 'queued' AND pool = $1 AND run_after <= $2 AND deps_pending = 0
				  AND owner <> ALL($3::text[])
				ORDER BY priority DESC, created_at, id
				LIMIT $4
				FOR UPDATE SKIP LOCKED`, p.Pool, p.Now, excluded, want)
			if err != nil {
				return fmt.Errorf("select candidates: %w", err)
			}
			var cands []cand
			for rows.Next() {
				var c cand
				if err := rows.Scan(&c.id, &c.owner); err != nil {
					rows.Close()
					return fmt.Errorf("select candidates: %w", err)
				}
				cands = append(cands, c)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("select candidates: %w", err)
			}
			if len(cands) == 0 {
				break
			}

			var newOwners []string
			for _, c := range cands {
				if !lockedOwners[c.owner] && !slices.Contains(newOwners, c.owner) {
					newOwners = append(newOwners, c.owner)
				}
			}
			slices.Sort(newOwners)
			if len(newOwners) > 0 {
				lockSQL := `SELECT owner FROM owners WHERE owner = ANY($1::text[]) ORDER BY owner FOR UPDATE`
				if round > 0 {
					lockSQL += ` SKIP LOCKED`
				}
				rows, err := tx.Query(ctx, lockSQL, newOwners)
				if err != nil {
					return fmt.Errorf("lock owners: %w", err)
				}
				got, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					return fmt.Errorf("lock owners: %w", err)
				}
				for _, o := range got {
					lockedOwners[o] = true
				}
			}

			candOwners := make([]string, 0, len(lockedOwners))
			for o := range lockedOwners {
				candOwners = append(candOwners, o)
			}
			running := map[string]int{}
			rows, err = tx.Query(ctx, `SELECT owner, count(*)::int FROM tasks
				WHERE state = 'running' AND owner = ANY($1::text[]) GROUP BY owner`, candOwners)
			if err != nil {
				return fmt.Errorf("count running per owner: %w", err)
			}
			for rows.Next() {
				var (
					o string
					n int
				)
				if err := rows.Scan(&o, &n); err != nil {
					rows.Close()
					return fmt.Errorf("count running per owner: %w", err)
				}
				running[o] = n
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("count running per owner: %w", err)
			}

			var grant []string
			blocked := false
			for _, c := range cands {
				if !lockedOwners[c.owner] || running[c.owner] >= p.OwnerLimit {
					if !slices.Contains(excluded, c.owner) {
						excluded = append(excluded, c.owner)
					}
					blocked = true
					continue
				}
				running[c.owner]++
				grant = append(grant, c.id.String())
			}
			if len(grant) > 0 {
				rows, err := tx.Query(ctx, `UPDATE tasks t SET `+claimSet+`
					WHERE t.id = ANY(@ids::uuid[])
					RETURNING `+taskColsT, pgx.NamedArgs{
					"ids": grant, "worker": p.WorkerID, "now": p.Now, "expires": expires,
				})
				if err != nil {
					return fmt.Errorf("grant tasks: %w", err)
				}
				got, err := collectTasks(rows)
				if err != nil {
					return fmt.Errorf("grant tasks: %w", err)
				}
				out = append(out, got...)
			}
			if len(cands) < want || !blocked {
				break
			}
		}
		return nil
	})
	return out, err
}

// TaskDemand returns the per-pool demand signal; see store.Store.
func (s *Store) TaskDemand(ctx context.Context, params *store.TaskDemandParams) (map[string]store.PoolDemand, error) {
	out := map[string]store.PoolDemand{}
	rows, err := s.pool.Query(ctx, `WITH r AS (
			SELECT owner, count(*)::int AS n FROM tasks WHERE state = 'running' GROUP BY owner
		), q AS (
			SELECT pool, owner, count(*)::int AS queued,
				(count(*) FILTER (WHERE run_after <= $1 AND deps_pending = 0))::int AS ready
			FROM tasks WHERE state = 'queued' GROUP BY pool, owner
		)
		SELECT q.pool, sum(q.queued)::int, sum(q.ready)::int,
			sum(CASE WHEN $2::int > 0 THEN LEAST(q.ready, GREATEST(0, $2::int - COALESCE(r.n, 0))) ELSE q.ready END)::int
		FROM q LEFT JOIN r ON r.owner = q.owner
		GROUP BY q.pool`, params.Now, params.OwnerLimit)
	if err != nil {
		return nil, fmt.Errorf("compute demand: %w", err)
	}
	for rows.Next() {
		var (
			pool                     string
			queued, ready, claimable int
		)
		if err := rows.Scan(&pool, &queued, &ready, &claimable); err != nil {
			rows.Close()
			return nil, fmt.Errorf("compute demand: %w", err)
		}
		out[pool] = store.PoolDemand{Queued: queued, Claimable: claimable, OwnerBlocked: ready - claimable}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("compute demand: %w", err)
	}
	rows, err = s.pool.Query(ctx, `SELECT pool, count(*)::int FROM tasks WHERE state = 'running' GROUP BY pool`)
	if err != nil {
		return nil, fmt.Errorf("compute demand: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			pool string
			n    int
		)
		if err := rows.Scan(&pool, &n); err != nil {
			return nil, fmt.Errorf("compute demand: %w", err)
		}
		d := out[pool]
		d.Running = n
		out[pool] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("compute demand: %w", err)
	}
	return out, nil
}
