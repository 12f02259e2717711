package core

import (
	"time"

	"github.com/google/uuid"
)

// Output is one file a task produced and the server verified: recorded
// once, when the task succeeds, from the manifest of the attempt that
// succeeded. BlobKey names the object in the output store.
type Output struct {
	TaskID      uuid.UUID `json:"task_id"`
	Name        string    `json:"name"`
	Attempt     int       `json:"attempt"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"content_type"`
	BlobKey     string    `json:"-"`
	CreatedAt   time.Time `json:"created_at"`
	// ExpiresAt is when retention deletes the output (object and row).
	ExpiresAt time.Time `json:"expires_at"`
}
