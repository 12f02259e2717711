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

// TaskClaim runs the claims of params in one transaction; see store.Store.
// A single claim without an owner limit is one statement (claimUnlimited).
// Claims without an owner limit run as one statement per pool (claimGroup);
// owner-limited claims run the statements of TaskClaim inside the shared
// transaction, so they see the tasks earlier items were granted (the owner
// limit counts them) and never pick them again.
func (s *Store) TaskClaim(ctx context.Context, params []*store.TaskClaimParams) ([][]*core.Task, error) {
	if err := checkClaims(params); err != nil {
		return nil, err
	}
	out := make([][]*core.Task, len(params))
	if len(params) == 0 {
		return out, nil
	}
	plan := planClaims(params)
	err := retryDeadlock(ctx, func() error {
		if len(params) == 1 && plan.single {
			clear(out)
			ts, err := s.claimUnlimited(ctx, s.pool, params[0], false)
			out[0] = ts
			return err
		}
		if plan.single {
			// One statement is its own transaction: no BEGIN and COMMIT
			// round trips.
			clear(out)
			if err := claimGroup(ctx, s.pool, params, plan.groups[plan.order[0]], out); err != nil {
				return fmt.Errorf("claim in pool %q: %w", plan.order[0].pool, err)
			}
			return nil
		}
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			clear(out)
			return s.claimInTx(ctx, tx, params, plan, out)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("claim tasks for %d claims: %w", len(params), err)
	}
	sortClaims(out)
	return out, nil
}

// checkClaims validates every claim of a TaskClaim call.
func checkClaims(params []*store.TaskClaimParams) error {
	for i, p := range params {
		if p.Max < 1 || p.Max > MaxClaim {
			return core.Invalid(fmt.Sprintf("claims[%d].max", i), "must be between 1 and %d, got %d", MaxClaim, p.Max)
		}
		if p.LeaseDuration <= 0 {
			return core.Invalid(fmt.Sprintf("claims[%d].lease_duration", i), "must be positive, got %s", p.LeaseDuration)
		}
	}
	return nil
}

// claimKey is what the claims of one group statement share.
type claimKey struct {
	pool  string
	now   time.Time
	lease time.Duration
}

// claimPlan groups the claims of a call: claims without an owner limit
// that share pool, time and lease run as one statement per group (one
// round trip for any number of workers); owner-limited claims run one by
// one, in input order.
type claimPlan struct {
	order  []claimKey
	groups map[claimKey][]int
	// single is whether every claim is in the one group.
	single bool
}

func planClaims(params []*store.TaskClaimParams) claimPlan {
	p := claimPlan{groups: map[claimKey][]int{}}
	for i, c := range params {
		if c.OwnerLimit > 0 {
			continue
		}
		k := claimKey{c.Pool, c.Now, c.LeaseDuration}
		if _, ok := p.groups[k]; !ok {
			p.order = append(p.order, k)
			if len(p.order) == 1 {
				// Most calls are one group: size it for every claim.
				p.groups[k] = make([]int, 0, len(params)-i)
			}
		}
		p.groups[k] = append(p.groups[k], i)
	}
	p.single = len(p.order) == 1 && len(p.groups[p.order[0]]) == len(params)
	return p
}

// claimInTx runs the claims of params inside tx: the groups' statements,
// then the owner-limited claims, which see what the groups granted.
func (s *Store) claimInTx(ctx context.Context, tx pgx.Tx, params []*store.TaskClaimParams, plan claimPlan, out [][]*core.Task) error {
	for _, k := range plan.order {
		if err := claimGroup(ctx, tx, params, plan.groups[k], out); err != nil {
			return fmt.Errorf("claim in pool %q: %w", k.pool, err)
		}
	}
	for i, p := range params {
		if p.OwnerLimit == 0 {
			continue
		}
		ts, err := s.claimOwnerLimited(ctx, tx, p)
		if errors.Is(err, core.ErrNotFound) {
			ts, err = nil, nil
		}
		if err != nil {
			return fmt.Errorf("claim for worker %s: %w", p.WorkerID, err)
		}
		out[i] = ts
	}
	return nil
}

// sortClaims puts every claim's tasks in claim order (an empty slice for
// a claim that got nothing).
func sortClaims(out [][]*core.Task) {
	for i := range out {
		if out[i] == nil {
			out[i] = []*core.Task{}
		}
		slices.SortFunc(out[i], claimOrder)
	}
}

// claimGroup claims, in one statement, for the items idx of params (same
// pool, Now and LeaseDuration, no owner limit): the claimable tasks are
// locked in claim order (SKIP LOCKED, at most as many as the items ask
// for), the workers that may claim (state booting or ready) get slots in
// item order and the n-th task goes to the n-th slot, which is what running
// the claims one after the other would grant. Results go to out[i].
//
// Only as many workers as there are picked tasks are locked (FOR SHARE, in
// item order; each has at least one slot, so they cover every task that
// the slots of all the workers would). A pass of parked claims that finds
// nothing therefore locks and writes nothing, and its commit has no WAL to
// flush; a pass that grants one task locks one worker row, not one per
// parked claim. The tasks are picked by the same ordered index scan as
// before, so no other scan of the queue is added.
func claimGroup(ctx context.Context, tx querier, params []*store.TaskClaimParams, idx []int, out [][]*core.Task) error {
	p0 := params[idx[0]]
	// The workers go out as one bytea of their 16-byte IDs, and Max as one
	// number when every item has the same (the usual case; an int[] of
	// them otherwise): a pass over hundreds of parked claims then encodes
	// one flat value instead of arrays element by element, each grown
	// from pgx's small buffers. ord is the item's 1-based position in idx.
	// Positional arguments, not pgx.NamedArgs: named ones have the query
	// text rewritten on every call.
	workers := make([]byte, 0, 16*len(idx))
	uniform := true
	slots := 0
	for _, i := range idx {
		workers = append(workers, params[i].WorkerID[:]...)
		uniform = uniform && params[i].Max == p0.Max
		slots += params[i].Max
	}
	var maxOne *int32
	var maxes []int32
	if uniform {
		m := int32(p0.Max)
		maxOne = &m
	} else {
		maxes = make([]int32, len(idx))
		for j, i := range idx {
			maxes[j] = int32(params[i].Max)
		}
	}
	// The bytea is the last argument: pgx encodes the arguments one after
	// the other into one buffer, and the small ones then fit in its first
	// allocation.
	rows, err := tx.Query(ctx, `WITH req AS (
			SELECT encode(substring($7::bytea FROM k*16 - 15 FOR 16), 'hex')::uuid AS worker,
				coalesce($1::int, ($2::int[])[k]) AS max, k AS ord
			FROM generate_series(1, length($7::bytea) / 16) AS k
		), picked AS (
			SELECT c.id, row_number() OVER (ORDER BY c.priority DESC, c.created_at, c.id) AS rn FROM (
				SELECT id, priority, created_at FROM tasks
				WHERE state = 'queued' AND pool = $4 AND run_after <= $5 AND deps_pending = 0
				ORDER BY priority DESC, created_at, id
				LIMIT $3
				FOR UPDATE SKIP LOCKED
			) c
		), ok AS (
			SELECT req.worker, req.max, req.ord FROM req JOIN workers w ON w.id = req.worker
			WHERE w.state IN ('booting', 'ready')
			ORDER BY req.ord
			LIMIT (SELECT count(*) FROM picked)
			FOR SHARE OF w
		), slots AS (
			SELECT ok.worker, ok.ord, row_number() OVER (ORDER BY ok.ord, k) AS rn
			FROM ok, generate_series(1, ok.max) AS k
		), grant_ AS (
			SELECT p.id, s.worker, s.ord FROM picked p JOIN slots s ON s.rn = p.rn
		)
		UPDATE tasks t SET state = 'running', attempt = t.attempt + 1, worker_id = g.worker,
			lease_token = gen_random_uuid(), lease_expires_at = $6, started_at = $5,
			updated_at = $5, progress = NULL, progress_msg = ''
		FROM grant_ g
		WHERE t.id = g.id AND t.id = ANY(ARRAY(SELECT id FROM grant_))
		RETURNING `+taskColsT+`, g.ord`,
		maxOne, maxes, slots, p0.Pool, p0.Now, p0.Now.Add(p0.LeaseDuration), workers)
	if err != nil {
		return err
	}
	defer rows.Close()
	var ord int64
	r := ordRow{rows: rows, ord: &ord}
	for rows.Next() {
		t, err := scanTask(&r)
		if err != nil {
			return err
		}
		if ord < 1 || ord > int64(len(idx)) {
			return fmt.Errorf("claim: row for item %d of %d", ord, len(idx))
		}
		i := idx[ord-1]
		out[i] = append(out[i], t)
	}
	return rows.Err()
}

// ordRow scans a task row followed by one extra column into ord; dest
// and ord are gathered in buf, reused from row to row.
type ordRow struct {
	rows pgx.Rows
	ord  *int64
	buf  []any
}

func (r *ordRow) Scan(dest ...any) error {
	r.buf = append(append(r.buf[:0], dest...), r.ord)
	return r.rows.Scan(r.buf...)
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
// worker row is locked FOR SHARE in the same statement, and only once a
// task was picked (as in claimGroup: a claim that finds nothing locks and
// writes nothing). The outer UPDATE finds the picked rows through
// id = ANY(ARRAY(...)), which always plans as a primary-key lookup (a join
// with the CTE can plan as a scan of the whole table when statistics are
// stale).
//
// checkWorker asks, when nothing was claimed, whether the worker exists
// (core.ErrNotFound if not); a batch skips that round trip.
func (s *Store) claimUnlimited(ctx context.Context, q querier, p *store.TaskClaimParams, checkWorker bool) ([]*core.Task, error) {
	// A claim of one task (agents that run one task at a time) finds its
	// row with a plain primary-key lookup, which is cheaper to set up
	// than an array scan.
	pickedMatch := "t.id = ANY(ARRAY(SELECT id FROM picked))"
	if p.Max == 1 {
		pickedMatch = "t.id = (SELECT id FROM picked)"
	}
	rows, err := q.Query(ctx, `WITH picked AS (
			SELECT id FROM tasks
			WHERE state = 'queued' AND pool = @pool AND run_after <= @now AND deps_pending = 0
			ORDER BY priority DESC, created_at, id
			LIMIT @max
			FOR UPDATE SKIP LOCKED
		), w AS (
			SELECT id FROM workers WHERE id = @worker AND state IN ('booting', 'ready')
			  AND EXISTS (SELECT 1 FROM picked)
			FOR SHARE
		)
		UPDATE tasks t SET `+claimSet+`
		WHERE `+pickedMatch+` AND EXISTS (SELECT 1 FROM w)
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
	if len(out) == 0 && checkWorker {
		// Tell an unknown worker apart from an idle queue.
		var st string
		err := q.QueryRow(ctx, `SELECT state FROM workers WHERE id = $1`, p.WorkerID).Scan(&st)
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
// concurrency, in one transaction:
//
//  1. lock the worker row FOR SHARE and check its state; in the same
//     statement, read which owners at the head of the queue are already at
//     their limit (a snapshot, only a pre-filter, so a saturated owner's
//     tasks do not crowd out others);
//  2. lock candidate tasks FOR UPDATE SKIP LOCKED, excluding those owners;
//  3. lock the candidates' owner rows, sorted, FOR UPDATE (later rounds use
//     SKIP LOCKED so they never wait while holding locks out of order);
//  4. in a new statement (under READ COMMITTED it sees every commit of a
//     previous holder of those owner locks) count the owners' running
//     tasks and grant at most limit-running per owner, in claim order.
//
// Owners left with an ungranted candidate are excluded and the claim goes
// round again until it has Max tasks or the queue has nothing more.
func (s *Store) claimOwnerLimited(ctx context.Context, tx pgx.Tx, p *store.TaskClaimParams) ([]*core.Task, error) {
	var out []*core.Task
	err := func() error {
		// Lock the worker row and, in the same round trip, read which owners
		// at the head of the queue (twice the claim's size) are already at
		// their limit; each count stops at the limit, so this costs
		// O(head owners × limit) whatever the size of the running set.
		var (
			st       string
			excluded []string
		)
		err := tx.QueryRow(ctx, `SELECT w.state, ARRAY(
				SELECT h.owner FROM (
					SELECT DISTINCT owner FROM (
						SELECT owner FROM tasks
						WHERE state = 'queued' AND pool = $2 AND run_after <= $3 AND deps_pending = 0
						ORDER BY priority DESC, created_at, id
						LIMIT $4
					) head
				) h
				WHERE (SELECT count(*) FROM (
					SELECT 1 FROM tasks r WHERE r.state = 'running' AND r.owner = h.owner LIMIT $5
				) c) >= $5)
			FROM workers w WHERE w.id = $1 FOR SHARE OF w`,
			p.WorkerID, p.Pool, p.Now, 2*p.Max, p.OwnerLimit).Scan(&st, &excluded)
		if errors.Is(err, pgx.ErrNoRows) {
			return core.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("lock worker: %w", err)
		}
		if ws := core.WorkerState(st); ws != core.WorkerBooting && ws != core.WorkerReady {
			return nil
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

			// Count and grant in one new statement: its snapshot is taken
			// after the owner locks were granted, so it sees every commit
			// of a previous holder (and this claim's earlier rounds).
			var ids, owners []string
			for _, c := range cands {
				if lockedOwners[c.owner] {
					ids = append(ids, c.id.String())
					owners = append(owners, c.owner)
				}
			}
			var got []*core.Task
			if len(ids) > 0 {
				rows, err := tx.Query(ctx, `WITH cand AS (
						SELECT * FROM unnest(@ids::uuid[], @owners::text[]) WITH ORDINALITY AS c(id, owner, ord)
					), running AS (
						SELECT owner, count(*)::int AS n FROM tasks
						WHERE state = 'running' AND owner = ANY(@owners::text[]) GROUP BY owner
					), granted AS (
						SELECT r.id FROM (
							SELECT id, owner, row_number() OVER (PARTITION BY owner ORDER BY ord) AS rn FROM cand
						) r LEFT JOIN running ru ON ru.owner = r.owner
						WHERE r.rn <= @limit::int - COALESCE(ru.n, 0)
					)
					UPDATE tasks t SET `+claimSet+`
					WHERE t.id = ANY(ARRAY(SELECT id FROM granted))
					RETURNING `+taskColsT, pgx.NamedArgs{
					"ids": ids, "owners": owners, "limit": p.OwnerLimit,
					"worker": p.WorkerID, "now": p.Now, "expires": expires,
				})
				if err != nil {
					return fmt.Errorf("grant tasks: %w", err)
				}
				got, err = collectTasks(rows)
				if err != nil {
					return fmt.Errorf("grant tasks: %w", err)
				}
				out = append(out, got...)
			}
			if len(got) == len(cands) || len(cands) < want {
				break
			}
			// Owners with a candidate left ungranted (at their limit, or
			// locked by another claim) are excluded from the next round.
			granted := make(map[uuid.UUID]bool, len(got))
			for _, t := range got {
				granted[t.ID] = true
			}
			for _, c := range cands {
				if !granted[c.id] && !slices.Contains(excluded, c.owner) {
					excluded = append(excluded, c.owner)
				}
			}
		}
		return nil
	}()
	return out, err
}
