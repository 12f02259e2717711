package store

import (
	"context"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// OutputStore is the persistence of task outputs. Store embeds it.
type OutputStore interface {
	// TaskCompleteOutputs completes one held task exactly like
	// TaskComplete and, in the same transaction, records its outputs. It
	// returns core.ErrLeaseLost (nothing written) when the lease is not
	// held. A task is completed at most once, so at most one set of
	// outputs is ever recorded per task.
	TaskCompleteOutputs(ctx context.Context, params *TaskCompleteOutputsParams) error
	// OutputList returns the outputs of a task, by name.
	OutputList(ctx context.Context, taskID uuid.UUID) ([]*core.Output, error)
	// OutputListExpired returns up to Limit outputs whose ExpiresAt is
	// before Before, oldest first.
	OutputListExpired(ctx context.Context, before time.Time, limit int) ([]*core.Output, error)
	// OutputDelete deletes output rows (unknown ones are skipped).
	OutputDelete(ctx context.Context, outs []*core.Output) error
}

// TaskCompleteOutputsParams is the input of TaskCompleteOutputs.
type TaskCompleteOutputsParams struct {
	Now        time.Time
	WorkerID   uuid.UUID
	Completion TaskCompletion
	// Outputs all belong to Completion's task.
	Outputs []*core.Output
}
