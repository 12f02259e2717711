package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/store"
)

// TaskDemand returns the per-pool demand signal; see store.Store and
// store.ComputeDemand. It reads one snapshot on the read-only pool, so it
// never blocks writers, and with params.Cap its cost does not depend on the
// backlog: every lookup is a range of the tasks_demand or
// tasks_running_owner_pool index.
func (s *Store) TaskDemand(ctx context.Context, params *store.TaskDemandParams) (map[string]store.PoolDemand, error) {
	var out map[string]store.PoolDemand
	err := s.inReadTx(ctx, "task demand", func(tx *sql.Tx) error {
		var err error
		out, err = store.ComputeDemand(ctx, demandSource{tx}, params)
		if err != nil {
			return fmt.Errorf("task demand: %w", err)
		}
		return nil
	})
	return out, err
}

// demandSource implements store.DemandSource in one read transaction.
type demandSource struct{ tx *sql.Tx }

func (d demandSource) RunningByPoolOwner(ctx context.Context) (map[store.PoolOwner]int, error) {
	rows, err := d.tx.QueryContext(ctx, `SELECT pool, owner, count(*) FROM tasks
		WHERE state = 'running' GROUP BY owner, pool`)
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
	err := d.tx.QueryRowContext(ctx, q, args...).Scan(&v)
	if isNoRows(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("next queued %s: %w", what, err)
	}
	return v, true, nil
}

func (d demandSource) NextQueuedPool(ctx context.Context, after string, first bool) (string, bool, error) {
	if first {
		return d.next(ctx, "pool", `SELECT pool FROM tasks INDEXED BY tasks_demand
			WHERE state = 'queued' ORDER BY pool LIMIT 1`)
	}
	return d.next(ctx, "pool", `SELECT pool FROM tasks INDEXED BY tasks_demand
		WHERE state = 'queued' AND pool > ? ORDER BY pool LIMIT 1`, after)
}

func (d demandSource) NextQueuedOwner(ctx context.Context, pool, after string, first bool) (string, bool, error) {
	if first {
		return d.next(ctx, "owner", `SELECT owner FROM tasks INDEXED BY tasks_demand
			WHERE state = 'queued' AND pool = ? ORDER BY owner LIMIT 1`, pool)
	}
	return d.next(ctx, "owner", `SELECT owner FROM tasks INDEXED BY tasks_demand
		WHERE state = 'queued' AND pool = ? AND owner > ? ORDER BY owner LIMIT 1`, pool, after)
}

func (d demandSource) count(ctx context.Context, what, q string, args ...any) (int, error) {
	var n int
	if err := d.tx.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", what, err)
	}
	return n, nil
}

func (d demandSource) CountQueued(ctx context.Context, pool string, limit int) (int, error) {
	return d.count(ctx, "queued", `SELECT count(*) FROM (SELECT 1 FROM tasks INDEXED BY tasks_demand
		WHERE state = 'queued' AND pool = ? LIMIT ?)`, pool, limit)
}

func (d demandSource) CountReady(ctx context.Context, pool string, owner *string, now time.Time, limit int) (int, error) {
	if owner == nil {
		return d.count(ctx, "ready", `SELECT count(*) FROM (SELECT 1 FROM tasks INDEXED BY tasks_demand
			WHERE state = 'queued' AND pool = ? AND deps_pending = 0 AND run_after <= ? LIMIT ?)`,
			pool, micros(now), limit)
	}
	return d.count(ctx, "ready", `SELECT count(*) FROM (SELECT 1 FROM tasks INDEXED BY tasks_demand
		WHERE state = 'queued' AND pool = ? AND owner = ? AND deps_pending = 0 AND run_after <= ? LIMIT ?)`,
		pool, *owner, micros(now), limit)
}
