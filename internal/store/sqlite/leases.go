package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// TaskLeaseRenew extends every lease still held; see store.Store.
func (s *Store) TaskLeaseRenew(ctx context.Context, params *store.TaskLeaseRenewParams) ([]core.Lease, error) {
	lost := []core.Lease{}
	if len(params.Leases) == 0 {
		return lost, nil
	}
	err := s.inTx(ctx, "renew leases", func(tx *sql.Tx) error {
		until := micros(params.Until)
		for _, l := range params.Leases {
			res, err := s.execNamed(ctx, tx, "renew", until, l.TaskID.String(), l.Token.String(), l.WorkerID.String())
			if err != nil {
				return fmt.Errorf("renew leases: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				lost = append(lost, l.Lease)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lost, nil
}

// TaskRelease puts claimed-but-undelivered tasks back to queued.
func (s *Store) TaskRelease(ctx context.Context, params *store.TaskReleaseParams) (int, error) {
	n := 0
	err := s.inTx(ctx, "release tasks", func(tx *sql.Tx) error {
		for _, l := range params.Leases {
			res, err := tx.ExecContext(ctx, `UPDATE tasks SET state = 'queued', attempt = max(attempt - 1, 0),
					started_at = NULL, worker_id = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = ?
				WHERE id = ? AND lease_token = ? AND worker_id = ? AND state = 'running'`,
				micros(params.Now), l.TaskID.String(), l.Token.String(), l.WorkerID.String())
			if err != nil {
				return fmt.Errorf("release task %s: %w", l.TaskID, err)
			}
			k, _ := res.RowsAffected()
			n += int(k)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// TaskProgress records progress under a held lease.
func (s *Store) TaskProgress(ctx context.Context, params *store.TaskProgressParams) error {
	var p any
	if params.Progress != nil {
		p = *params.Progress
	}
	res, err := s.db.ExecContext(ctx, `UPDATE tasks SET progress = coalesce(?, progress), progress_msg = ?, updated_at = ?
		WHERE id = ? AND lease_token = ? AND state = 'running' AND worker_id = ?`,
		p, params.Message, micros(params.Now), params.Lease.TaskID.String(), params.Lease.Token.String(), params.WorkerID.String())
	if err != nil {
		return fmt.Errorf("record progress: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return core.ErrLeaseLost
	}
	return nil
}

// TaskComplete runs the completions of params in one transaction; see
// store.Store.
func (s *Store) TaskComplete(ctx context.Context, params []*store.TaskCompleteParams) ([][]core.Lease, error) {
	out := make([][]core.Lease, len(params))
	err := s.inTx(ctx, "complete tasks", func(tx *sql.Tx) error {
		for i, p := range params {
			lost, err := s.completeTx(ctx, tx, p)
			if err != nil {
				return fmt.Errorf("complete batch item %d: %w", i, err)
			}
			out[i] = lost
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// completeTx is one worker's completions inside tx.
func (s *Store) completeTx(ctx context.Context, tx *sql.Tx, params *store.TaskCompleteParams) ([]core.Lease, error) {
	lost := []core.Lease{}
	if len(params.Items) == 0 {
		return lost, nil
	}
	now := micros(params.Now)
	worker := params.WorkerID.String()
	err := func() error {
		var done []any
		for _, it := range params.Items {
			id := it.Lease.TaskID.String()
			res, err := s.execNamed(ctx, tx, "complete", nullJSON(it.Result), now, now, id, it.Lease.Token.String(), worker)
			if err != nil {
				return fmt.Errorf("complete tasks: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				lost = append(lost, it.Lease)
				continue
			}
			done = append(done, id)
		}
		// Release dependents once per batch. A dependent may wait on
		// several tasks of this batch, so it loses one pending count per
		// completed dependency, not one in total.
		for start := 0; start < len(done); start += chunkSize {
			chunk := done[start:min(start+chunkSize, len(done))]
			in := placeholders(len(chunk))
			args := append(append(append([]any{}, chunk...), now), chunk...)
			if _, err := tx.ExecContext(ctx, `UPDATE tasks SET
				deps_pending = deps_pending - (SELECT count(*) FROM task_deps d WHERE d.task_id = tasks.id AND d.dep_id IN (`+in+`)),
				updated_at = ?
				WHERE state = 'queued' AND id IN (SELECT task_id FROM task_deps WHERE dep_id IN (`+in+`))`, args...); err != nil {
				return fmt.Errorf("complete tasks: release dependents: %w", err)
			}
		}
		if len(done) > 0 {
			if _, err := s.execNamed(ctx, tx, "workerDone", len(done), now, worker); err != nil {
				return fmt.Errorf("complete tasks: worker counters: %w", err)
			}
		}
		return nil
	}()
	if err != nil {
		return nil, err
	}
	return lost, nil
}
