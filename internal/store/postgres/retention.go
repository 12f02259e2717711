package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/store"
	"github.com/jackc/pgx/v5"
)

// Prune deletes events and logs older than before, and final tasks (with
// their dependency edges) finished before before. It returns the number of
// events, logs and tasks deleted.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	total := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if f, ok := store.FenceFrom(ctx); ok {
			if err := checkFence(ctx, tx, f); err != nil {
				return err
			}
		}
		for _, q := range []string{
			`DELETE FROM events WHERE time < $1`,
			`DELETE FROM logs WHERE time < $1`,
		} {
			tag, err := tx.Exec(ctx, q, before)
			if err != nil {
				return err
			}
			total += int(tag.RowsAffected())
		}
		var n int
		err := tx.QueryRow(ctx, `WITH gone AS (
				DELETE FROM tasks
				WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < $1
				RETURNING id
			), edges_from AS (
				DELETE FROM task_deps WHERE task_id IN (SELECT id FROM gone)
			), edges_to AS (
				DELETE FROM task_deps WHERE dep_id IN (SELECT id FROM gone)
			)
			SELECT count(*)::int FROM gone`, before).Scan(&n)
		if err != nil {
			return err
		}
		total += n
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	return total, nil
}

// WorkerPrune deletes the rows of workers terminated before before; see
// store.Housekeeping.
func (s *Store) WorkerPrune(ctx context.Context, before time.Time) (int, error) {
	n := 0
	err := s.fenced(ctx, func(q querier) error {
		tag, err := q.Exec(ctx, `DELETE FROM workers WHERE state = 'terminated' AND state_changed_at < $1`, before)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune terminated workers: %w", err)
	}
	return n, nil
}
