package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const sampleCols = `time, pool, queued, claimable, running, requested, provisioning, booting, ready, draining,
	terminating, failed, succeeded, tasks_failed, spend_per_hour`

// SampleInsertMany implements store.Reporting.
func (s *Store) SampleInsertMany(ctx context.Context, samples []*store.Sample) error {
	if len(samples) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, x := range samples {
		b.Queue(`INSERT INTO samples (`+sampleCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
			ON CONFLICT (time, pool) DO UPDATE SET queued = EXCLUDED.queued, claimable = EXCLUDED.claimable,
				running = EXCLUDED.running, requested = EXCLUDED.requested, provisioning = EXCLUDED.provisioning,
				booting = EXCLUDED.booting, ready = EXCLUDED.ready, draining = EXCLUDED.draining,
				terminating = EXCLUDED.terminating, failed = EXCLUDED.failed, succeeded = EXCLUDED.succeeded,
				tasks_failed = EXCLUDED.tasks_failed, spend_per_hour = EXCLUDED.spend_per_hour`,
			x.Time, x.Pool, x.Queued, x.Claimable, x.Running, x.Requested, x.Provisioning, x.Booting,
			x.Ready, x.Draining, x.Terminating, x.Failed, x.Succeeded, x.TasksFailed, x.SpendPerHour)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("insert samples: %w", err)
	}
	return nil
}

// SampleList implements store.Reporting.
func (s *Store) SampleList(ctx context.Context, params *store.SampleListParams) ([]*store.Sample, error) {
	limit, err := store.ListLimit(params.Limit, store.DefaultSampleListLimit, store.MaxSampleListLimit)
	if err != nil {
		return nil, err
	}
	until := params.Until
	if until.IsZero() {
		until = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+sampleCols+` FROM samples
		WHERE time >= $1 AND time <= $2 AND ($3 = '' OR pool = $3)
		ORDER BY time, pool LIMIT $4`, params.Since, until, params.Pool, limit)
	if err != nil {
		return nil, fmt.Errorf("list samples: %w", err)
	}
	defer rows.Close()
	out := []*store.Sample{}
	for rows.Next() {
		var x store.Sample
		if err := rows.Scan(&x.Time, &x.Pool, &x.Queued, &x.Claimable, &x.Running, &x.Requested, &x.Provisioning,
			&x.Booting, &x.Ready, &x.Draining, &x.Terminating, &x.Failed, &x.Succeeded, &x.TasksFailed, &x.SpendPerHour); err != nil {
			return nil, fmt.Errorf("list samples: %w", err)
		}
		x.Time = x.Time.UTC()
		out = append(out, &x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list samples: %w", err)
	}
	return out, nil
}

// SamplePrune implements store.Reporting.
func (s *Store) SamplePrune(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM samples WHERE time < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("prune samples: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// TaskFinishedCount implements store.Reporting.
func (s *Store) TaskFinishedCount(ctx context.Context, since, until time.Time) (succeeded, failed int, err error) {
	err = s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed')
		FROM tasks WHERE finished_at > $1 AND finished_at <= $2`, since, until).Scan(&succeeded, &failed)
	if err != nil {
		return 0, 0, fmt.Errorf("count finished tasks: %w", err)
	}
	return succeeded, failed, nil
}

// WorkerSpend implements store.Reporting.
func (s *Store) WorkerSpend(ctx context.Context, since, until time.Time) (map[string]float64, error) {
	rows, err := s.pool.Query(ctx, `SELECT pool,
		sum(price_per_hour * extract(epoch FROM (least(coalesce(terminated_at, $2), $2) - greatest(created_at, $1)))::float8) / 3600
		FROM workers
		WHERE price_per_hour > 0 AND created_at < $2 AND coalesce(terminated_at, $2) > $1
		GROUP BY pool`, since, until)
	if err != nil {
		return nil, fmt.Errorf("read spend: %w", err)
	}
	defer rows.Close()
	out := map[string]float64{}
	for rows.Next() {
		var pool string
		var v float64
		if err := rows.Scan(&pool, &v); err != nil {
			return nil, fmt.Errorf("read spend: %w", err)
		}
		out[pool] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read spend: %w", err)
	}
	return out, nil
}

// TaskOldestReady implements store.Reporting.
func (s *Store) TaskOldestReady(ctx context.Context, now time.Time) (*time.Time, error) {
	var t time.Time
	err := s.pool.QueryRow(ctx, `SELECT created_at FROM tasks
		WHERE state = 'queued' AND run_after <= $1 AND deps_pending = 0
		ORDER BY created_at LIMIT 1`, now).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read oldest ready task: %w", err)
	}
	t = t.UTC()
	return &t, nil
}

// TaskRunningByOwner implements store.Reporting.
func (s *Store) TaskRunningByOwner(ctx context.Context, atLeast int) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT owner, count(*) FROM tasks WHERE state = 'running'
		GROUP BY owner HAVING count(*) >= $1`, atLeast)
	if err != nil {
		return nil, fmt.Errorf("count running tasks per owner: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var o string
		var n int
		if err := rows.Scan(&o, &n); err != nil {
			return nil, fmt.Errorf("count running tasks per owner: %w", err)
		}
		out[o] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count running tasks per owner: %w", err)
	}
	return out, nil
}

// liveWorkers is WorkerListParams.LiveOnly's filter.
const liveWorkers = `(state IN ('requested', 'provisioning', 'booting', 'ready', 'draining', 'terminating')
	OR (state = 'failed' AND terminated_at IS NULL))`

// WorkerGroups implements store.Reporting: one aggregate pass over the
// workers table.
func (s *Store) WorkerGroups(ctx context.Context, staleBefore time.Time) ([]*store.WorkerGroup, error) {
	rows, err := s.pool.Query(ctx, `SELECT pool, state, failure <> '',
		state = 'ready' AND (last_heartbeat_at IS NULL OR last_heartbeat_at < $1),
		count(*), coalesce(sum(price_per_hour), 0)::float8, max(ready_at)
		FROM workers WHERE `+liveWorkers+` GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`, staleBefore)
	if err != nil {
		return nil, fmt.Errorf("count workers: %w", err)
	}
	defer rows.Close()
	out := []*store.WorkerGroup{}
	for rows.Next() {
		var g store.WorkerGroup
		var state string
		var ready *time.Time
		if err := rows.Scan(&g.Pool, &state, &g.Failed, &g.Stale, &g.Count, &g.PricePerHour, &ready); err != nil {
			return nil, fmt.Errorf("count workers: %w", err)
		}
		g.State = core.WorkerState(state)
		if ready != nil {
			at := ready.UTC()
			g.LastReadyAt = &at
		}
		out = append(out, &g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count workers: %w", err)
	}
	return out, nil
}

// WorkerAttentionIDs implements store.Reporting: one pass over the workers
// table with a top-limit sort.
func (s *Store) WorkerAttentionIDs(ctx context.Context, staleBefore time.Time, limit int) ([]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM workers WHERE `+liveWorkers+`
		ORDER BY coalesce(state = 'ready' AND last_heartbeat_at >= $1, false), created_at, id
		LIMIT $2`, staleBefore, limit)
	if err != nil {
		return nil, fmt.Errorf("list workers needing attention: %w", err)
	}
	defer rows.Close()
	out := []uuid.UUID{}
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list workers needing attention: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list workers needing attention: %w", err)
	}
	return out, nil
}

// WorkerStarts implements store.Reporting.
func (s *Store) WorkerStarts(ctx context.Context, since, until time.Time, limit int) ([]*store.WorkerStart, error) {
	rows, err := s.pool.Query(ctx, `SELECT placement, created_at, ready_at FROM workers
		WHERE ready_at > $1 AND ready_at <= $2 ORDER BY ready_at DESC LIMIT $3`, since, until, limit)
	if err != nil {
		return nil, fmt.Errorf("list worker starts: %w", err)
	}
	defer rows.Close()
	out := []*store.WorkerStart{}
	for rows.Next() {
		var x store.WorkerStart
		if err := rows.Scan(&x.Placement, &x.CreatedAt, &x.ReadyAt); err != nil {
			return nil, fmt.Errorf("list worker starts: %w", err)
		}
		x.CreatedAt, x.ReadyAt = x.CreatedAt.UTC(), x.ReadyAt.UTC()
		out = append(out, &x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list worker starts: %w", err)
	}
	return out, nil
}
