package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/store"
	"github.com/jackc/pgx/v5"
)

// TaskDemand returns the per-pool demand signal; see store.Store and
// store.ComputeDemand. It reads one REPEATABLE READ snapshot, and with
// params.Cap its cost does not depend on the backlog: every lookup is a
// range of the tasks_demand or tasks_running_owner_pool index.
func (s *Store) TaskDemand(ctx context.Context, params *store.TaskDemandParams) (map[string]store.PoolDemand, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("compute demand: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	out, err := store.ComputeDemand(ctx, demandSource{tx}, params)
	if err != nil {
		return nil, fmt.Errorf("compute demand: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("compute demand: commit: %w", err)
	}
	return out, nil
}

// demandOrder is the key order of the tasks_demand index. Every queued-side
// lookup orders by it: sessions use generic plans, and a generic plan of a
// LIMITed count may otherwise pick a sequential scan, which reads the whole
// table for a small pool. Ordered like the index, the index scan is the
// plan that needs no sort, whatever the statistics.
const demandOrder = `pool, owner, deps_pending, run_after`

// demandSource implements store.DemandSource in one read-only transaction.
type demandSource struct{ tx pgx.Tx }

// pgLimit maps DemandSource's "< 0 = no limit" to SQL (NULL = ALL).
func pgLimit(n int) any {
	if n < 0 {
		return nil
	}
	return n
}

func (d demandSource) RunningByPoolOwner(ctx context.Context) (map[store.PoolOwner]int, error) {
	rows, err := d.tx.Query(ctx, `SELECT pool, owner, count(*)::int FROM tasks
		WHERE state = 'running' GROUP BY owner, pool ORDER BY owner, pool`)
	if err != nil {
		return nil, fmt.Errorf("count running: %w", err)
	}
	defer rows.Close()
	out := map[store.PoolOwner]int{}
	for rows.Next() {
		var k store.PoolOwner
		var n int
		if err := rows.Scan(&k.Pool, &k.Owner, &n); err != nil {
			return nil, fmt.Errorf("count running: %w", err)
		}
		out[k] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count running: %w", err)
	}
	return out, nil
}

func (d demandSource) next(ctx context.Context, what, q string, args ...any) (string, bool, error) {
	var v string
	err := d.tx.QueryRow(ctx, q, args...).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("next queued %s: %w", what, err)
	}
	return v, true, nil
}

func (d demandSource) NextQueuedPool(ctx context.Context, after string, first bool) (string, bool, error) {
	if first {
		return d.next(ctx, "pool", `SELECT pool FROM tasks WHERE state = 'queued'
			ORDER BY `+demandOrder+` LIMIT 1`)
	}
	return d.next(ctx, "pool", `SELECT pool FROM tasks WHERE state = 'queued' AND pool > $1
		ORDER BY `+demandOrder+` LIMIT 1`, after)
}

func (d demandSource) NextQueuedOwner(ctx context.Context, pool, after string, first bool) (string, bool, error) {
	if first {
		return d.next(ctx, "owner", `SELECT owner FROM tasks WHERE state = 'queued' AND pool = $1
			ORDER BY `+demandOrder+` LIMIT 1`, pool)
	}
	return d.next(ctx, "owner", `SELECT owner FROM tasks WHERE state = 'queued' AND pool = $1 AND owner > $2
		ORDER BY `+demandOrder+` LIMIT 1`, pool, after)
}

func (d demandSource) count(ctx context.Context, what, q string, args ...any) (int, error) {
	var n int
	if err := d.tx.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", what, err)
	}
	return n, nil
}

func (d demandSource) CountQueued(ctx context.Context, pool string, limit int) (int, error) {
	return d.count(ctx, "queued", `SELECT count(*)::int FROM (SELECT 1 FROM tasks
		WHERE state = 'queued' AND pool = $1 ORDER BY `+demandOrder+` LIMIT $2) q`, pool, pgLimit(limit))
}

func (d demandSource) CountReady(ctx context.Context, pool string, owner *string, now time.Time, limit int) (int, error) {
	if owner == nil {
		return d.count(ctx, "ready", `SELECT count(*)::int FROM (SELECT 1 FROM tasks
			WHERE state = 'queued' AND pool = $1 AND deps_pending = 0 AND run_after <= $2
			ORDER BY `+demandOrder+` LIMIT $3) q`,
			pool, now, pgLimit(limit))
	}
	return d.count(ctx, "ready", `SELECT count(*)::int FROM (SELECT 1 FROM tasks
		WHERE state = 'queued' AND pool = $1 AND owner = $2 AND deps_pending = 0 AND run_after <= $3
		ORDER BY `+demandOrder+` LIMIT $4) q`,
		pool, *owner, now, pgLimit(limit))
}
