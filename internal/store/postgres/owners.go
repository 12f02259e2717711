package postgres

import (
	"context"
	"fmt"

	"github.com/droverhq/drover/internal/store"
)

var _ store.OwnerQueueCounter = (*Store)(nil)

// TaskQueuedCountByOwner counts owner's queued tasks, at most atMost; see
// store.OwnerQueueCounter. It needs no index of its own: the queued pools
// are found by a loose scan of tasks_demand (pool, owner, …) WHERE state =
// 'queued', and per pool the owner's tasks are one range of it, read up to
// atMost rows. The cost follows the number of pools and the cap, not the
// backlog.
func (s *Store) TaskQueuedCountByOwner(ctx context.Context, owner string, atMost int) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `WITH RECURSIVE pools AS (
			(SELECT pool FROM tasks WHERE state = 'queued' ORDER BY `+demandOrder+` LIMIT 1)
			UNION ALL
			SELECT (SELECT t.pool FROM tasks t WHERE t.state = 'queued' AND t.pool > p.pool
				ORDER BY `+demandOrder+` LIMIT 1)
			FROM pools p WHERE p.pool IS NOT NULL
		)
		SELECT count(*)::int FROM (
			SELECT 1 FROM pools p CROSS JOIN LATERAL (
				SELECT 1 FROM tasks t WHERE t.state = 'queued' AND t.pool = p.pool AND t.owner = $1
				ORDER BY `+demandOrder+` LIMIT $2) x
			WHERE p.pool IS NOT NULL
			LIMIT $2) c`, owner, atMost).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count queued tasks of owner %q: %w", owner, err)
	}
	return n, nil
}
