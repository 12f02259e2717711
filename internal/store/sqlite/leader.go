package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"

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
		rows, err := tx.QueryContext(ctx, `INSERT INTO leader (name, leader_id, elected_at, expires_at, term)
			VALUES ('default', ?, ?, ?, 1)
			ON CONFLICT (name) DO UPDATE SET
				term = CASE WHEN leader.leader_id = excluded.leader_id THEN leader.term ELSE leader.term + 1 END,
				previous_id = CASE WHEN leader.leader_id = excluded.leader_id THEN leader.previous_id ELSE leader.leader_id END,
				cause = CASE WHEN leader.leader_id = excluded.leader_id THEN leader.cause
					WHEN leader.expires_at = -9223372036854775808 THEN 'resign' ELSE 'takeover' END,
				elected_at = CASE WHEN leader.leader_id = excluded.leader_id THEN leader.elected_at ELSE excluded.elected_at END,
				leader_id = excluded.leader_id,
				expires_at = excluded.expires_at
			WHERE leader.leader_id = excluded.leader_id OR leader.expires_at <= excluded.elected_at
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

// LeaderResign gives up leadership if leaderID holds it: the row expires
// at once and keeps its term, so terms only grow.
func (s *Store) LeaderResign(ctx context.Context, leaderID string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE leader SET expires_at = ? WHERE leader_id = ?`, int64(math.MinInt64), leaderID); err != nil {
		return fmt.Errorf("resign leadership: %w", err)
	}
	return nil
}

// LeaderGet returns the leadership row; see store.LeaderReader.
func (s *Store) LeaderGet(ctx context.Context) (*store.Leader, error) {
	var (
		l                store.Leader
		elected, expires int64
	)
	err := s.rdb.QueryRowContext(ctx, `SELECT leader_id, term, elected_at, max(expires_at, elected_at), previous_id, cause
		FROM leader WHERE name = 'default'`).Scan(&l.LeaderID, &l.Term, &elected, &expires, &l.PreviousID, &l.Cause)
	if isNoRows(err) {
		return nil, fmt.Errorf("get leader: %w", core.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get leader: %w", err)
	}
	l.ElectedAt, l.ExpiresAt = fromMicros(elected), fromMicros(expires)
	return &l, nil
}

// checkFence verifies inside tx that the fence's term still holds.
func checkFence(ctx context.Context, tx *sql.Tx, f store.Fence) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM leader WHERE name = 'default' AND leader_id = ? AND term = ?`,
		f.LeaderID, f.Term).Scan(&n); err != nil {
		return fmt.Errorf("check leadership term: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("%w (term %d of %s)", store.ErrFenced, f.Term, f.LeaderID)
	}
	return nil
}
