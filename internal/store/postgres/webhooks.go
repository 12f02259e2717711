package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// WebhookCallbackPut records task callbacks; see store.WebhookStore.
func (s *Store) WebhookCallbackPut(ctx context.Context, cbs []store.WebhookCallback) error {
	if len(cbs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, c := range cbs {
		b.Queue(`INSERT INTO webhook_callbacks (task_id, url) VALUES ($1, $2) ON CONFLICT (task_id) DO NOTHING`, c.TaskID, c.URL)
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record %d webhook callbacks: %w", len(cbs), err)
	}
	return nil
}

// WebhookEnqueue moves the callbacks of final tasks to the outbox; see
// store.WebhookStore. One statement, so the rows it deletes are exactly
// those it enqueues, whatever finishes concurrently.
func (s *Store) WebhookEnqueue(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `WITH moved AS (
			DELETE FROM webhook_callbacks c USING tasks t
			WHERE t.id = c.task_id AND t.state IN ('succeeded', 'failed', 'cancelled')
			RETURNING c.task_id, c.url, c.round, t.state)
		INSERT INTO webhook_deliveries (id, task_id, url, state, status, attempts, next_at, created_at, last_error)
		SELECT `+deliveryID+`, task_id, url, state, 'pending', 0, $1, $1, '' FROM moved
		ON CONFLICT (id) DO NOTHING`, now)
	if err != nil {
		return 0, fmt.Errorf("enqueue webhooks: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM webhook_callbacks c
		WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = c.task_id)`); err != nil {
		return 0, fmt.Errorf("drop callbacks of deleted tasks: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// deliveryID is the idempotency id of a moved callback (task_id, state,
// round).
const deliveryID = `task_id::text || ':' || state || CASE WHEN round > 1 THEN ':' || round::text ELSE '' END`

// WebhookRearm records a retried task's callback again; see store.Tx. The
// caller holds the task's row lock.
func (t *txn) WebhookRearm(ctx context.Context, taskID uuid.UUID, now time.Time) error {
	if _, err := t.tx.Exec(ctx, `WITH moved AS (
			DELETE FROM webhook_callbacks c USING tasks t
			WHERE c.task_id = $2 AND t.id = c.task_id AND t.state IN ('succeeded', 'failed', 'cancelled')
			RETURNING c.task_id, c.url, c.round, t.state)
		INSERT INTO webhook_deliveries (id, task_id, url, state, status, attempts, next_at, created_at, last_error)
		SELECT `+deliveryID+`, task_id, url, state, 'pending', 0, $1, $1, '' FROM moved
		ON CONFLICT (id) DO NOTHING`, now, taskID); err != nil {
		return fmt.Errorf("enqueue the webhook of task %s: %w", taskID, err)
	}
	if _, err := t.tx.Exec(ctx, `INSERT INTO webhook_callbacks (task_id, url, round)
		SELECT task_id, max(url), count(*) + 1 FROM webhook_deliveries WHERE task_id = $1 GROUP BY task_id
		ON CONFLICT (task_id) DO NOTHING`, taskID); err != nil {
		return fmt.Errorf("rearm the webhook of task %s: %w", taskID, err)
	}
	return nil
}

// WebhookDue lists due deliveries; see store.WebhookStore.
func (s *Store) WebhookDue(ctx context.Context, now time.Time, limit int) ([]*store.WebhookDelivery, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT id, task_id, url, state, status, attempts, next_at, created_at, last_error
		FROM webhook_deliveries WHERE status = 'pending' AND next_at <= $1 ORDER BY next_at, id LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("list due webhooks: %w", err)
	}
	defer rows.Close()
	out := []*store.WebhookDelivery{}
	for rows.Next() {
		var d store.WebhookDelivery
		if err := rows.Scan(&d.ID, &d.TaskID, &d.URL, &d.State, &d.Status, &d.Attempts, &d.NextAt, &d.CreatedAt, &d.LastError); err != nil {
			return nil, fmt.Errorf("list due webhooks: %w", err)
		}
		d.NextAt, d.CreatedAt = d.NextAt.UTC(), d.CreatedAt.UTC()
		out = append(out, &d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list due webhooks: %w", err)
	}
	return out, nil
}

// WebhookClaim takes a delivery for one attempt; see store.WebhookStore.
func (s *Store) WebhookClaim(ctx context.Context, d *store.WebhookDelivery, until time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE webhook_deliveries SET attempts = attempts + 1, next_at = $1
		WHERE id = $2 AND status = 'pending' AND attempts = $3`, until, d.ID, d.Attempts)
	if err != nil {
		return false, fmt.Errorf("claim webhook %s: %w", d.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// WebhookUpdate writes a delivery's outcome; see store.WebhookStore.
func (s *Store) WebhookUpdate(ctx context.Context, d *store.WebhookDelivery) error {
	if _, err := s.pool.Exec(ctx, `UPDATE webhook_deliveries SET status = $1, next_at = $2, last_error = $3 WHERE id = $4`,
		d.Status, d.NextAt, d.LastError, d.ID); err != nil {
		return fmt.Errorf("update webhook %s: %w", d.ID, err)
	}
	return nil
}
