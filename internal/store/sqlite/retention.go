package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/store"
)

// Prune deletes events and logs older than before and final tasks finished
// before it. It returns the number of rows deleted.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	total := 0
	err := s.inTx(ctx, "prune", func(tx *sql.Tx) error {
		if f, ok := store.FenceFrom(ctx); ok {
			if err := checkFence(ctx, tx, f); err != nil {
				return err
			}
		}
		b := micros(before)
		for _, q := range []string{
			`DELETE FROM events WHERE time < ?`,
			`DELETE FROM logs WHERE time < ?`,
			`DELETE FROM tasks WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NOT NULL AND finished_at < ?`,
		} {
			res, err := tx.ExecContext(ctx, q, b)
			if err != nil {
				return fmt.Errorf("prune: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("prune: %w", err)
			}
			total += int(n)
		}
		return nil
	})
	return total, err
}

// WorkerPrune deletes the rows of workers terminated before before; see
// store.Housekeeping.
func (s *Store) WorkerPrune(ctx context.Context, before time.Time) (int, error) {
	n := 0
	err := s.inTx(ctx, "prune terminated workers", func(tx *sql.Tx) error {
		if f, ok := store.FenceFrom(ctx); ok {
			if err := checkFence(ctx, tx, f); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM workers WHERE state = 'terminated' AND state_changed_at < ?`, micros(before))
		if err != nil {
			return fmt.Errorf("prune terminated workers: %w", err)
		}
		m, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("prune terminated workers: %w", err)
		}
		n = int(m)
		return nil
	})
	return n, err
}
