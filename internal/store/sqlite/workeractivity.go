package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// WorkerActivity reads what others write to the live worker rows; see
// store.Store. The control loop calls it every tick over the whole fleet,
// and in this driver a row and each of its columns cost far more to
// decode (a lock per column access) than SQLite takes to read them: so
// each of the two queries aggregates its rows into one text value, one
// line per row, which Go splits. One read transaction: the live rows (a
// sequential scan), then the running lease counts per worker (an
// index-only scan of tasks_running_worker), matched by the stored id text.
func (s *Store) WorkerActivity(ctx context.Context) ([]store.WorkerActivity, error) {
	var rowsText, runningText sql.NullString
	err := s.inReadTx(ctx, "worker activity", func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT group_concat(w.id || ' ' || w.state || ' ' ||
			coalesce(w.last_heartbeat_at, '') || ' ' || coalesce(w.last_task_at, '') || ' ' || w.tasks_done, char(10))
			FROM workers w WHERE `+liveWorkersSQL).Scan(&rowsText); err != nil {
			return fmt.Errorf("worker activity: %w", err)
		}
		if rowsText.String == "" {
			return nil
		}
		if err := tx.QueryRowContext(ctx, `SELECT group_concat(worker_id || ' ' || n, char(10))
			FROM (SELECT worker_id, count(*) AS n FROM tasks
				WHERE state = 'running' AND worker_id IS NOT NULL GROUP BY worker_id)`).Scan(&runningText); err != nil {
			return fmt.Errorf("worker activity: count leases: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]store.WorkerActivity, 0, strings.Count(rowsText.String, "\n")+1)
	byID := make(map[string]int, cap(out))
	for line := range strings.SplitSeq(rowsText.String, "\n") {
		if line == "" {
			continue
		}
		a, id, err := parseActivity(line)
		if err != nil {
			return nil, fmt.Errorf("worker activity: %w", err)
		}
		byID[id] = len(out)
		out = append(out, a)
	}
	for line := range strings.SplitSeq(runningText.String, "\n") {
		if line == "" {
			continue
		}
		id, n, _ := strings.Cut(line, " ")
		i, ok := byID[id]
		if !ok {
			continue
		}
		if out[i].Running, err = strconv.Atoi(n); err != nil {
			return nil, fmt.Errorf("worker activity: lease count of %s: %w", id, err)
		}
	}
	return out, nil
}

// parseActivity parses one line of WorkerActivity's rows: id, state, last
// heartbeat and last task (microseconds, empty when null), tasks done.
func parseActivity(line string) (store.WorkerActivity, string, error) {
	var (
		a      store.WorkerActivity
		f      [5]string
		rest   = line
		err    error
		micros int64
	)
	for i := range f {
		f[i], rest, _ = strings.Cut(rest, " ")
	}
	if a.ID, err = uuid.Parse(f[0]); err != nil {
		return a, "", fmt.Errorf("parse worker id %q: %w", f[0], err)
	}
	a.State = core.WorkerState(f[1])
	if f[2] != "" {
		if micros, err = strconv.ParseInt(f[2], 10, 64); err != nil {
			return a, "", fmt.Errorf("worker %s: last heartbeat: %w", f[0], err)
		}
		a.LastHeartbeatAt = fromMicros(micros)
	}
	if f[3] != "" {
		if micros, err = strconv.ParseInt(f[3], 10, 64); err != nil {
			return a, "", fmt.Errorf("worker %s: last task: %w", f[0], err)
		}
		a.LastTaskAt = fromMicros(micros)
	}
	if a.TasksDone, err = strconv.Atoi(f[4]); err != nil {
		return a, "", fmt.Errorf("worker %s: tasks done: %w", f[0], err)
	}
	return a, f[0], nil
}
