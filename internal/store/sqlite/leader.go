package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// LeaderAttemptElect takes, keeps or is refused the single leader lease;
// see store.Store.
func (s *Store) LeaderAttemptElect(ctx context.Context, params *store.LeaderElectParams) (bool, error) {
	if params.LeaderID == "" {
		return false, core.Invalid("leader_id", "must not be empty")
	}
	if params.TTL <= 0 {
		return false, core.Invalid("ttl", "must be positive, got %s", params.TTL)
	}
	var ok bool
	err := s.inTx(ctx, "elect leader", func(tx *sql.Tx) error {
		now := micros(params.Now)
		if _, err := tx.ExecContext(ctx, `DELETE FROM leader WHERE expires_at < ?`, now); err != nil {
			return fmt.Errorf("elect leader: drop expired: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `INSERT INTO leader (name, leader_id, elected_at, expires_at) VALUES ('default', ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at WHERE leader.leader_id = excluded.leader_id
			RETURNING leader_id`, params.LeaderID, now, micros(params.Now.Add(params.TTL)))
		if err != nil {
			return fmt.Errorf("elect leader: %w", err)
		}
		ok = rows.Next()
		rows.Close()
		return rows.Err()
	})
	return ok, err
}

// LeaderResign gives up leadership if leaderID holds it.
func (s *Store) LeaderResign(ctx context.Context, leaderID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM leader WHERE leader_id = ?`, leaderID); err != nil {
		return fmt.Errorf("resign leadership: %w", err)
	}
	return nil
}
