package sqlite

import (
	"context"
	"fmt"

	"github.com/droverhq/drover/internal/store"
)

var _ store.OwnerQueueCounter = (*Store)(nil)

// TaskQueuedCountByOwner counts owner's queued tasks, at most atMost; see
// store.OwnerQueueCounter.
func (s *Store) TaskQueuedCountByOwner(ctx context.Context, owner string, atMost int) (int, error) {
	var n int
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM tasks
		WHERE state = 'queued' AND owner = ? LIMIT ?)`, owner, atMost).Scan(&n); err != nil {
		return 0, fmt.Errorf("count queued tasks of owner %q: %w", owner, err)
	}
	return n, nil
}
