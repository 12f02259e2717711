package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// WorkerRequestPut records (or replaces) a worker's pending request.
func (s *Store) WorkerRequestPut(ctx context.Context, req *store.WorkerRequest) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO worker_requests (worker_id, action, failure, reason, requested_by, requested_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (worker_id) DO UPDATE SET action = excluded.action, failure = excluded.failure,
			reason = excluded.reason, requested_by = excluded.requested_by, requested_at = excluded.requested_at`,
		req.WorkerID.String(), string(req.Action), string(req.Failure), req.Reason, req.RequestedBy, micros(req.RequestedAt))
	if err != nil {
		return fmt.Errorf("record %s request for worker %s: %w", req.Action, req.WorkerID, err)
	}
	return nil
}

// WorkerRequestList returns the pending requests, oldest first.
func (s *Store) WorkerRequestList(ctx context.Context) ([]*store.WorkerRequest, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT worker_id, action, failure, reason, requested_by, requested_at
		FROM worker_requests ORDER BY requested_at, worker_id`)
	if err != nil {
		return nil, fmt.Errorf("list worker requests: %w", err)
	}
	defer rows.Close()
	var out []*store.WorkerRequest
	for rows.Next() {
		var (
			r             store.WorkerRequest
			id, act, fail string
			at            int64
		)
		if err := rows.Scan(&id, &act, &fail, &r.Reason, &r.RequestedBy, &at); err != nil {
			return nil, fmt.Errorf("list worker requests: %w", err)
		}
		if r.WorkerID, err = uuid.Parse(id); err != nil {
			return nil, fmt.Errorf("list worker requests: %w", err)
		}
		r.Action, r.Failure, r.RequestedAt = store.WorkerAction(act), core.FailureClass(fail), fromMicros(at)
		out = append(out, &r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list worker requests: %w", err)
	}
	return out, nil
}

// WorkerRequestDelete deletes applied requests; see store.Store.
func (s *Store) WorkerRequestDelete(ctx context.Context, reqs []*store.WorkerRequest) error {
	if len(reqs) == 0 {
		return nil
	}
	return s.inTx(ctx, "delete worker requests", func(tx *sql.Tx) error {
		for _, r := range reqs {
			if _, err := tx.ExecContext(ctx, `DELETE FROM worker_requests WHERE worker_id = ? AND action = ? AND requested_at = ?`,
				r.WorkerID.String(), string(r.Action), micros(r.RequestedAt)); err != nil {
				return fmt.Errorf("delete worker requests: %w", err)
			}
		}
		return nil
	})
}
