package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// WorkerRequestPut records (or replaces) a worker's pending request.
func (s *Store) WorkerRequestPut(ctx context.Context, req *store.WorkerRequest) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO worker_requests (worker_id, action, failure, reason, requested_by, requested_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (worker_id) DO UPDATE SET action = excluded.action, failure = excluded.failure,
			reason = excluded.reason, requested_by = excluded.requested_by, requested_at = excluded.requested_at`,
		req.WorkerID, string(req.Action), string(req.Failure), req.Reason, req.RequestedBy, req.RequestedAt)
	if err != nil {
		return fmt.Errorf("record %s request for worker %s: %w", req.Action, req.WorkerID, err)
	}
	return nil
}

// WorkerRequestList returns the pending requests, oldest first.
func (s *Store) WorkerRequestList(ctx context.Context) ([]*store.WorkerRequest, error) {
	rows, err := s.pool.Query(ctx, `SELECT worker_id, action, failure, reason, requested_by, requested_at
		FROM worker_requests ORDER BY requested_at, worker_id`)
	if err != nil {
		return nil, fmt.Errorf("list worker requests: %w", err)
	}
	defer rows.Close()
	var out []*store.WorkerRequest
	for rows.Next() {
		var (
			r         store.WorkerRequest
			act, fail string
			at        time.Time
		)
		if err := rows.Scan(&r.WorkerID, &act, &fail, &r.Reason, &r.RequestedBy, &at); err != nil {
			return nil, fmt.Errorf("list worker requests: %w", err)
		}
		r.Action, r.Failure, r.RequestedAt = store.WorkerAction(act), core.FailureClass(fail), at.UTC()
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
	ids := make([]uuid.UUID, len(reqs))
	acts := make([]string, len(reqs))
	ats := make([]time.Time, len(reqs))
	for i, r := range reqs {
		ids[i], acts[i], ats[i] = r.WorkerID, string(r.Action), r.RequestedAt
	}
	err := s.fenced(ctx, func(q querier) error {
		_, err := q.Exec(ctx, `DELETE FROM worker_requests w
		USING unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS d(worker_id, action, at)
		WHERE w.worker_id = d.worker_id AND w.action = d.action AND w.requested_at = d.at`, ids, acts, ats)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete worker requests: %w", err)
	}
	return nil
}
