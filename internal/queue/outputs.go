package queue

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// CompleteWithOutputs completes a held task and records its verified
// outputs in the same transaction (core.ErrLeaseLost when the lease is
// stale: nothing is recorded). The caller (the outputs service) has
// checked every object against the manifest. It bypasses the completion
// group commit: a task with outputs already spent far longer uploading.
func (s *Service) CompleteWithOutputs(ctx context.Context, workerID uuid.UUID, lease core.Lease, result json.RawMessage, outs []*core.Output) error {
	res, err := checkJSONObject("result", result, core.MaxResultBytes)
	if err != nil {
		return err
	}
	for _, o := range outs {
		if o.TaskID != lease.TaskID {
			return fmt.Errorf("complete task %s: output %q belongs to task %s", lease.TaskID, o.Name, o.TaskID)
		}
	}
	err = s.st.TaskCompleteOutputs(ctx, &store.TaskCompleteOutputsParams{
		Now: s.clock.Now(), WorkerID: workerID,
		Completion: store.TaskCompletion{Lease: lease, Result: res},
		Outputs:    outs,
	})
	if err != nil {
		return fmt.Errorf("complete task %s with %d outputs: %w", lease.TaskID, len(outs), err)
	}
	return nil
}
