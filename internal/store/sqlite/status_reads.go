package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// EventRecent implements store.Reporting: for each kind, the latest limit
// events of the window read backwards from events_kind_time (one
// subquery per kind, UNION ALL), merged and cut to limit.
func (s *Store) EventRecent(ctx context.Context, kinds []core.EventKind, since time.Time, limit int) ([]*core.Event, error) {
	limit, err := store.ListLimit(limit, store.DefaultEventListLimit, store.MaxEventListLimit)
	if err != nil {
		return nil, err
	}
	out := []*core.Event{}
	if len(kinds) == 0 {
		return out, nil
	}
	parts := make([]string, len(kinds))
	var args []any
	for i, k := range kinds {
		parts[i] = `SELECT * FROM (SELECT id, time, kind, pool, worker_id, task_id, message, data FROM events
			WHERE kind = ? AND time >= ? ORDER BY time DESC LIMIT ?)`
		args = append(args, string(k), micros(since), limit)
	}
	q := strings.Join(parts, " UNION ALL ") + ` ORDER BY time DESC, id DESC LIMIT ?`
	rows, err := s.rdb.QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list recent events: %w", err)
	}
	defer rows.Close()
	out, err = scanEvents(rows, out)
	if err != nil {
		return nil, fmt.Errorf("list recent events: %w", err)
	}
	return out, nil
}
