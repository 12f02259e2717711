package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

const sampleCols = `time, pool, queued, claimable, running, requested, provisioning, booting, ready, draining,
	terminating, failed, succeeded, tasks_failed, spend_per_hour`

// SampleInsertMany implements store.Reporting.
func (s *Store) SampleInsertMany(ctx context.Context, samples []*store.Sample) error {
	if len(samples) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("insert samples: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, x := range samples {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO samples (`+sampleCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			micros(x.Time), x.Pool, x.Queued, x.Claimable, x.Running, x.Requested, x.Provisioning, x.Booting,
			x.Ready, x.Draining, x.Terminating, x.Failed, x.Succeeded, x.TasksFailed, x.SpendPerHour); err != nil {
			return fmt.Errorf("insert samples: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
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
		until = time.Unix(1<<40, 0)
	}
	q := `SELECT ` + sampleCols + ` FROM samples WHERE time >= ? AND time <= ?`
	args := []any{micros(params.Since), micros(until)}
	if params.Pool != "" {
		q += ` AND pool = ?`
		args = append(args, params.Pool)
	}
	q += ` ORDER BY time, pool LIMIT ?`
	args = append(args, limit)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list samples: %w", err)
	}
	defer rows.Close()
	out := []*store.Sample{}
	for rows.Next() {
		var x store.Sample
		var t int64
		if err := rows.Scan(&t, &x.Pool, &x.Queued, &x.Claimable, &x.Running, &x.Requested, &x.Provisioning,
			&x.Booting, &x.Ready, &x.Draining, &x.Terminating, &x.Failed, &x.Succeeded, &x.TasksFailed, &x.SpendPerHour); err != nil {
			return nil, fmt.Errorf("list samples: %w", err)
		}
		x.Time = fromMicros(t)
		out = append(out, &x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list samples: %w", err)
	}
	return out, nil
}

// SamplePrune implements store.Reporting.
func (s *Store) SamplePrune(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM samples WHERE time < ?`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("prune samples: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune samples: %w", err)
	}
	return int(n), nil
}

// TaskFinishedCount implements store.Reporting.
func (s *Store) TaskFinishedCount(ctx context.Context, since, until time.Time) (succeeded, failed int, err error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT state, count(*) FROM tasks
		WHERE finished_at > ? AND finished_at <= ? GROUP BY state`, micros(since), micros(until))
	if err != nil {
		return 0, 0, fmt.Errorf("count finished tasks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return 0, 0, fmt.Errorf("count finished tasks: %w", err)
		}
		switch core.TaskState(st) {
		case core.TaskSucceeded:
			succeeded = n
		case core.TaskFailed:
			failed = n
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("count finished tasks: %w", err)
	}
	return succeeded, failed, nil
}

// WorkerSpend implements store.Reporting.
func (s *Store) WorkerSpend(ctx context.Context, since, until time.Time) (map[string]float64, error) {
	lo, hi := micros(since), micros(until)
	rows, err := s.rdb.QueryContext(ctx, `SELECT pool,
		sum(price_per_hour * (min(coalesce(terminated_at, ?1), ?1) - max(created_at, ?2))) / 3600000000.0
		FROM workers
		WHERE price_per_hour > 0 AND created_at < ?1 AND coalesce(terminated_at, ?1) > ?2
		GROUP BY pool`, hi, lo)
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
	var t int64
	err := s.rdb.QueryRowContext(ctx, `SELECT created_at FROM tasks
		WHERE state = 'queued' AND run_after <= ? AND deps_pending = 0
		ORDER BY created_at LIMIT 1`, micros(now)).Scan(&t)
	if err == sql.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read oldest ready task: %w", err)
	}
	at := fromMicros(t)
	return &at, nil
}

// TaskRunningByOwner implements store.Reporting.
func (s *Store) TaskRunningByOwner(ctx context.Context, atLeast int) (map[string]int, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT owner, count(*) FROM tasks WHERE state = 'running'
		GROUP BY owner HAVING count(*) >= ?`, atLeast)
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
	rows, err := s.rdb.QueryContext(ctx, `SELECT pool, state, failure <> '',
		state = 'ready' AND (last_heartbeat_at IS NULL OR last_heartbeat_at < ?),
		count(*), total(price_per_hour), max(ready_at)
		FROM workers WHERE `+liveWorkers+` GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`, micros(staleBefore))
	if err != nil {
		return nil, fmt.Errorf("count workers: %w", err)
	}
	defer rows.Close()
	out := []*store.WorkerGroup{}
	for rows.Next() {
		var g store.WorkerGroup
		var state string
		var ready sql.NullInt64
		if err := rows.Scan(&g.Pool, &state, &g.Failed, &g.Stale, &g.Count, &g.PricePerHour, &ready); err != nil {
			return nil, fmt.Errorf("count workers: %w", err)
		}
		g.State = core.WorkerState(state)
		if ready.Valid {
			at := fromMicros(ready.Int64)
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
	rows, err := s.rdb.QueryContext(ctx, `SELECT id FROM workers WHERE `+liveWorkers+`
		ORDER BY state = 'ready' AND last_heartbeat_at IS NOT NULL AND last_heartbeat_at >= ?, created_at, id
		LIMIT ?`, micros(staleBefore), limit)
	if err != nil {
		return nil, fmt.Errorf("list workers needing attention: %w", err)
	}
	defer rows.Close()
	out := []uuid.UUID{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list workers needing attention: %w", err)
		}
		u, err := uuid.Parse(id)
		if err != nil {
			return nil, fmt.Errorf("list workers needing attention: parse id %q: %w", id, err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list workers needing attention: %w", err)
	}
	return out, nil
}

// WorkerStarts implements store.Reporting.
func (s *Store) WorkerStarts(ctx context.Context, since, until time.Time, limit int) ([]*store.WorkerStart, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT placement, created_at, ready_at FROM workers
		WHERE ready_at > ? AND ready_at <= ? ORDER BY ready_at DESC LIMIT ?`, micros(since), micros(until), limit)
	if err != nil {
		return nil, fmt.Errorf("list worker starts: %w", err)
	}
	defer rows.Close()
	out := []*store.WorkerStart{}
	for rows.Next() {
		var x store.WorkerStart
		var created, ready int64
		if err := rows.Scan(&x.Placement, &created, &ready); err != nil {
			return nil, fmt.Errorf("list worker starts: %w", err)
		}
		x.CreatedAt, x.ReadyAt = fromMicros(created), fromMicros(ready)
		out = append(out, &x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list worker starts: %w", err)
	}
	return out, nil
}
