package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// EventRecent implements store.Reporting: for each kind, the latest limit
// events of the window read backwards from events_kind_time (a LATERAL
// subquery per kind, whose ORDER BY matches the index, so no statistics
// can turn it into a scan of the log), merged and cut to limit.
func (s *Store) EventRecent(ctx context.Context, kinds []core.EventKind, since time.Time, limit int) ([]*core.Event, error) {
	limit, err := store.ListLimit(limit, store.DefaultEventListLimit, store.MaxEventListLimit)
	if err != nil {
		return nil, err
	}
	out := []*core.Event{}
	if len(kinds) == 0 {
		return out, nil
	}
	k := make([]string, len(kinds))
	for i, kind := range kinds {
		k[i] = string(kind)
	}
	rows, err := s.pool.Query(ctx, `SELECT e.id, e.time, e.kind, e.pool, e.worker_id, e.task_id, e.message, e.data
		FROM unnest($1::text[]) AS k(kind)
		CROSS JOIN LATERAL (SELECT id, time, kind, pool, worker_id, task_id, message, data FROM events
			WHERE events.kind = k.kind AND events.time >= $2
			ORDER BY events.kind DESC, events.time DESC LIMIT $3) e
		ORDER BY e.time DESC, e.id DESC LIMIT $3`, k, since, limit)
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
