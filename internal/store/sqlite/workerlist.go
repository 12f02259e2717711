package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// workerListAll is WorkerList without IDs or Limit: the control loop's
// read of the whole live fleet every tick. Two queries in one read
// transaction, each a sequential scan: the matching worker rows in table
// order, and the running lease counts per worker from tasks_running_worker
// (an index-only scan). The rows are sorted oldest first in Go, which at
// 10,000 workers costs far less than SQLite's sorter or a table lookup per
// row in created_at order.
//
// brief selects only the columns the control loop reads (see
// store.WorkerListParams.Brief).
func (s *Store) workerListAll(ctx context.Context, where []string, args []any, params *store.WorkerListParams) ([]*core.Worker, error) {
	brief := params.Brief
	q := `SELECT ` + workerCols + `, 0 FROM workers w`
	scan := scanWorker
	if brief {
		q = `SELECT ` + workerBriefCols + ` FROM workers w`
		scan = scanWorkerBrief
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	out := []*core.Worker{}
	err := s.inReadTx(ctx, "list workers", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("list workers: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			w, err := scan(rows)
			if err != nil {
				return fmt.Errorf("list workers: %w", err)
			}
			out = append(out, w)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list workers: %w", err)
		}
		rows.Close()
		if len(out) == 0 {
			return nil
		}
		byID := make(map[string]*core.Worker, len(out))
		for _, w := range out {
			byID[w.ID.String()] = w
		}
		rows, err = tx.QueryContext(ctx, `SELECT worker_id, count(*) FROM tasks
			WHERE state = 'running' AND worker_id IS NOT NULL GROUP BY worker_id`)
		if err != nil {
			return fmt.Errorf("list workers: count leases: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				return fmt.Errorf("list workers: count leases: %w", err)
			}
			if w := byID[id]; w != nil {
				w.Running = n
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list workers: count leases: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *core.Worker) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		// ids are stored as canonical lower-case hex text, whose order is
		// the order of the bytes.
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	return out, nil
}

// workerBriefCols are the worker columns the control loop reads.
const workerBriefCols = `w.id, w.pool, w.provider, w.placement, w.instance_id, w.state, w.failure, w.reason,
	w.concurrency, w.price_per_hour, w.tasks_done, w.created_at, w.state_changed_at, w.ready_at,
	w.last_heartbeat_at, w.last_task_at, w.terminated_at, w.delete_attempts, w.missing_lists`

// scanWorkerBrief scans workerBriefCols.
func scanWorkerBrief(sc scanner) (*core.Worker, error) {
	var (
		w                               core.Worker
		id, state, failure              string
		created, changed                int64
		ready, hb, lastTask, terminated sql.NullInt64
	)
	err := sc.Scan(&id, &w.Pool, &w.Provider, &w.Placement, &w.InstanceID, &state, &failure, &w.Reason,
		&w.Concurrency, &w.PricePerHour, &w.TasksDone, &created, &changed, &ready,
		&hb, &lastTask, &terminated, &w.DeleteAttempts, &w.MissingLists)
	if err != nil {
		return nil, err
	}
	if w.ID, err = uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("parse worker id %q: %w", id, err)
	}
	w.State = core.WorkerState(state)
	w.Failure = core.FailureClass(failure)
	w.CreatedAt = fromMicros(created)
	w.StateChangedAt = fromMicros(changed)
	w.ReadyAt = ptrTime(ready)
	w.LastHeartbeatAt = ptrTime(hb)
	w.LastTaskAt = ptrTime(lastTask)
	w.TerminatedAt = ptrTime(terminated)
	return &w, nil
}
