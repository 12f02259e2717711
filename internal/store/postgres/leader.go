package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/jackc/pgx/v5"
)

// LeaderAttemptElect tries to become (or stay) leader until Now+TTL: River's
// single-row lease. The row is taken when it is absent, already ours, or
// expired (expires_at <= Now).
func (s *Store) LeaderAttemptElect(ctx context.Context, params *store.LeaderElectParams) (bool, error) {
	if params.LeaderID == "" {
		return false, core.Invalid("leader_id", "must not be empty")
	}
	if params.TTL <= 0 {
		return false, core.Invalid("ttl", "must be positive, got %s", params.TTL)
	}
	var id string
	err := s.pool.QueryRow(ctx, `INSERT INTO leader (name, leader_id, elected_at, expires_at)
		VALUES ('default', $1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET
			leader_id = EXCLUDED.leader_id,
			elected_at = CASE WHEN leader.leader_id = EXCLUDED.leader_id THEN leader.elected_at ELSE EXCLUDED.elected_at END,
			expires_at = EXCLUDED.expires_at
		WHERE leader.leader_id = EXCLUDED.leader_id OR leader.expires_at <= EXCLUDED.elected_at
		RETURNING leader_id`, params.LeaderID, params.Now, params.Now.Add(params.TTL)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("elect leader: %w", err)
	}
	return id == params.LeaderID, nil
}

// LeaderResign gives up leadership if leaderID holds it.
func (s *Store) LeaderResign(ctx context.Context, leaderID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM leader WHERE leader_id = $1`, leaderID); err != nil {
		return fmt.Errorf("resign leadership: %w", err)
	}
	return nil
}
