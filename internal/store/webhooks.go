package store

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// WebhookStore is the persistence of completion webhooks: the callback URL
// of each task that has not finished yet, and the outbox of deliveries.
// Store embeds it. A task's callback moves to the outbox once the task is
// final, so the outbox survives restarts and is independent of the path
// that finished the task.
type WebhookStore interface {
	// WebhookCallbackPut records the callback URL of tasks (a task that
	// already has one keeps it).
	WebhookCallbackPut(ctx context.Context, cbs []WebhookCallback) error
	// WebhookEnqueue moves the callbacks of final tasks (succeeded, failed,
	// cancelled) into the outbox as pending deliveries due at now, with the
	// id "<task id>:<state>", or "<task id>:<state>:<round>" from a
	// callback's second round on (Tx.WebhookRearm); an id already in the
	// outbox is skipped. It drops the callbacks of tasks that no longer
	// exist. It returns how many deliveries were enqueued.
	WebhookEnqueue(ctx context.Context, now time.Time) (int, error)
	// WebhookDue returns up to limit pending deliveries due at or before
	// now, oldest due first.
	WebhookDue(ctx context.Context, now time.Time, limit int) ([]*WebhookDelivery, error)
	// WebhookClaim takes a due delivery for one attempt: when it is still
	// pending with d.Attempts attempts, attempts becomes d.Attempts+1 and
	// next_at becomes until (so a crashed sender's delivery is retried
	// then). It returns false when another sender took it first.
	WebhookClaim(ctx context.Context, d *WebhookDelivery, until time.Time) (bool, error)
	// WebhookUpdate writes a delivery's status, next_at and last_error.
	WebhookUpdate(ctx context.Context, d *WebhookDelivery) error
}

// WebhookCallback is one item of WebhookCallbackPut.
type WebhookCallback struct {
	TaskID uuid.UUID
	URL    string
}

// Webhook delivery statuses.
const (
	WebhookPending   = "pending"
	WebhookDelivered = "delivered"
	WebhookFailed    = "failed"
)

// WebhookDelivery is one row of the outbox.
type WebhookDelivery struct {
	// ID is the idempotency id: "<task id>:<final state>", with
	// ":<round>" appended for the second and later final states of a
	// retried task.
	ID        string
	TaskID    uuid.UUID
	URL       string
	State     string
	Status    string
	Attempts  int
	NextAt    time.Time
	CreatedAt time.Time
	LastError string
}
