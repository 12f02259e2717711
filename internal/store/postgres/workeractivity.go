package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// WorkerActivity reads what others write to the live worker rows; see
// store.Store. One query: the narrow columns of the live rows joined to
// the running lease counts per worker.
func (s *Store) WorkerActivity(ctx context.Context) ([]store.WorkerActivity, error) {
	rows, err := s.pool.Query(ctx, `SELECT w.id, w.state, w.last_heartbeat_at, w.last_task_at, w.tasks_done, COALESCE(r.n, 0)
		FROM workers w
		LEFT JOIN (SELECT worker_id, count(*)::int AS n FROM tasks WHERE state = 'running' GROUP BY worker_id) r
		  ON r.worker_id = w.id
		WHERE w.state = ANY($1::text[]) OR (w.state = 'failed' AND w.terminated_at IS NULL)`, liveStates())
	if err != nil {
		return nil, fmt.Errorf("worker activity: %w", err)
	}
	defer rows.Close()
	var out []store.WorkerActivity
	for rows.Next() {
		var (
			a        store.WorkerActivity
			st       string
			hb, last *time.Time
		)
		if err := rows.Scan(&a.ID, &st, &hb, &last, &a.TasksDone, &a.Running); err != nil {
			return nil, fmt.Errorf("worker activity: %w", err)
		}
		a.State = core.WorkerState(st)
		if hb != nil {
			a.LastHeartbeatAt = hb.UTC()
		}
		if last != nil {
			a.LastTaskAt = last.UTC()
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("worker activity: %w", err)
	}
	return out, nil
}
