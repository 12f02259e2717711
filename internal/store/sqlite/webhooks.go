package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// WebhookCallbackPut records task callbacks; see store.WebhookStore.
func (s *Store) WebhookCallbackPut(ctx context.Context, cbs []store.WebhookCallback) error {
	if len(cbs) == 0 {
		return nil
	}
	return s.inTx(ctx, "record webhook callbacks", func(tx *sql.Tx) error {
		for _, c := range cbs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_callbacks (task_id, url) VALUES (?, ?)
				ON CONFLICT (task_id) DO NOTHING`, c.TaskID.String(), c.URL); err != nil {
				return fmt.Errorf("callback of task %s: %w", c.TaskID, err)
			}
		}
		return nil
	})
}

// WebhookEnqueue moves the callbacks of final tasks to the outbox; see
// store.WebhookStore. SQLite has one writer, so the insert and the delete
// see the same tasks.
func (s *Store) WebhookEnqueue(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.inTx(ctx, "enqueue webhooks", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries
			(id, task_id, url, state, status, attempts, next_at, created_at, last_error)
			SELECT `+deliveryID+`, c.task_id, c.url, t.state, 'pending', 0, ?, ?, ''
			FROM webhook_callbacks c JOIN tasks t ON t.id = c.task_id
			WHERE t.state IN ('succeeded', 'failed', 'cancelled')
			ON CONFLICT (id) DO NOTHING`, micros(now), micros(now))
		if err != nil {
			return err
		}
		m, err := res.RowsAffected()
		if err != nil {
			return err
		}
		n = int(m)
		_, err = tx.ExecContext(ctx, `DELETE FROM webhook_callbacks WHERE NOT EXISTS
			(SELECT 1 FROM tasks t WHERE t.id = webhook_callbacks.task_id AND t.state NOT IN ('succeeded', 'failed', 'cancelled'))`)
		return err
	})
	return n, err
}

// deliveryID is the idempotency id of callback c for task t's state.
const deliveryID = `c.task_id || ':' || t.state || CASE WHEN c.round > 1 THEN ':' || c.round ELSE '' END`

// WebhookRearm records a retried task's callback again; see store.Tx.
func (t *txn) WebhookRearm(ctx context.Context, taskID uuid.UUID, now time.Time) error {
	id := taskID.String()
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO webhook_deliveries
		(id, task_id, url, state, status, attempts, next_at, created_at, last_error)
		SELECT `+deliveryID+`, c.task_id, c.url, t.state, 'pending', 0, ?, ?, ''
		FROM webhook_callbacks c JOIN tasks t ON t.id = c.task_id
		WHERE c.task_id = ? AND t.state IN ('succeeded', 'failed', 'cancelled')
		ON CONFLICT (id) DO NOTHING`, micros(now), micros(now), id); err != nil {
		return fmt.Errorf("enqueue the webhook of task %s: %w", taskID, err)
	}
	if _, err := t.tx.ExecContext(ctx, `DELETE FROM webhook_callbacks WHERE task_id = ?`, id); err != nil {
		return fmt.Errorf("rearm the webhook of task %s: %w", taskID, err)
	}
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO webhook_callbacks (task_id, url, round)
		SELECT task_id, max(url), count(*) + 1 FROM webhook_deliveries WHERE task_id = ? GROUP BY task_id`, id); err != nil {
		return fmt.Errorf("rearm the webhook of task %s: %w", taskID, err)
	}
	return nil
}

// WebhookDue lists due deliveries; see store.WebhookStore.
func (s *Store) WebhookDue(ctx context.Context, now time.Time, limit int) ([]*store.WebhookDelivery, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, task_id, url, state, status, attempts, next_at, created_at, last_error
		FROM webhook_deliveries WHERE status = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?`, micros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("list due webhooks: %w", err)
	}
	defer rows.Close()
	out := []*store.WebhookDelivery{}
	for rows.Next() {
		var (
			d          store.WebhookDelivery
			tid        string
			next, crea int64
		)
		if err := rows.Scan(&d.ID, &tid, &d.URL, &d.State, &d.Status, &d.Attempts, &next, &crea, &d.LastError); err != nil {
			return nil, fmt.Errorf("list due webhooks: %w", err)
		}
		if d.TaskID, err = uuid.Parse(tid); err != nil {
			return nil, fmt.Errorf("webhook %s task id: %w", d.ID, err)
		}
		d.NextAt, d.CreatedAt = fromMicros(next), fromMicros(crea)
		out = append(out, &d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list due webhooks: %w", err)
	}
	return out, nil
}

// WebhookClaim takes a delivery for one attempt; see store.WebhookStore.
func (s *Store) WebhookClaim(ctx context.Context, d *store.WebhookDelivery, until time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE webhook_deliveries SET attempts = attempts + 1, next_at = ?
		WHERE id = ? AND status = 'pending' AND attempts = ?`, micros(until), d.ID, d.Attempts)
	if err != nil {
		return false, fmt.Errorf("claim webhook %s: %w", d.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim webhook %s: %w", d.ID, err)
	}
	return n == 1, nil
}

// WebhookUpdate writes a delivery's outcome; see store.WebhookStore.
func (s *Store) WebhookUpdate(ctx context.Context, d *store.WebhookDelivery) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE webhook_deliveries SET status = ?, next_at = ?, last_error = ? WHERE id = ?`,
		d.Status, micros(d.NextAt), d.LastError, d.ID); err != nil {
		return fmt.Errorf("update webhook %s: %w", d.ID, err)
	}
	return nil
}
