package postgres

import (
	"github.com/droverhq/drover/internal/core"
	"github.com/jackc/pgx/v5"
)

// workerBriefColsW are the worker columns the control loop reads (see
// store.WorkerListParams.Brief), prefixed for the "w" alias, in
// scanWorkerBrief order.
var workerBriefColsW = prefixed("w", `id, pool, provider, placement, instance_id, state, failure, reason,
	concurrency, price_per_hour, tasks_done, created_at, state_changed_at, ready_at,
	last_heartbeat_at, last_task_at, terminated_at, delete_attempts, missing_lists`)

// scanWorkerBrief scans a row selected with workerBriefColsW followed by
// extra destinations.
func scanWorkerBrief(row pgx.Row, extra ...any) (*core.Worker, error) {
	var (
		w       core.Worker
		state   string
		failure string
	)
	dest := []any{&w.ID, &w.Pool, &w.Provider, &w.Placement, &w.InstanceID, &state, &failure, &w.Reason,
		&w.Concurrency, &w.PricePerHour, &w.TasksDone, &w.CreatedAt, &w.StateChangedAt, &w.ReadyAt,
		&w.LastHeartbeatAt, &w.LastTaskAt, &w.TerminatedAt, &w.DeleteAttempts, &w.MissingLists}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	w.State = core.WorkerState(state)
	w.Failure = core.FailureClass(failure)
	w.CreatedAt = w.CreatedAt.UTC()
	w.StateChangedAt = w.StateChangedAt.UTC()
	w.ReadyAt = utcPtr(w.ReadyAt)
	w.LastHeartbeatAt = utcPtr(w.LastHeartbeatAt)
	w.LastTaskAt = utcPtr(w.LastTaskAt)
	w.TerminatedAt = utcPtr(w.TerminatedAt)
	return &w, nil
}
