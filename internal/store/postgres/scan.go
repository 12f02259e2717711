package postgres

import (
	"encoding/json"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// taskCols is the column list every task query selects, in scanTask order.
const taskCols = `id, type, params, owner, priority, pool, depends_on, max_attempts, max_lost,
	timeout_ms, idempotency_key, state, attempt, failures, lost, deps_pending, worker_id,
	lease_token, lease_expires_at, result, error, progress, progress_msg, created_at,
	run_after, started_at, finished_at, updated_at`

// prefixed returns cols with every column qualified by alias.
func prefixed(alias, cols string) string {
	out := make([]byte, 0, len(cols)*2)
	word := true
	for i := 0; i < len(cols); i++ {
		c := cols[i]
		isSpace := c == ' ' || c == '\n' || c == '\t' || c == ','
		if !isSpace && word {
			out = append(out, alias...)
			out = append(out, '.')
		}
		word = isSpace
		out = append(out, c)
	}
	return string(out)
}

var taskColsT = prefixed("t", taskCols)

// scanTask scans one row selected with taskCols.
func scanTask(row pgx.Row) (*core.Task, error) {
	var (
		t         core.Task
		params    []byte
		result    []byte
		idemKey   *string
		timeoutMS int64
		state     string
		// The UUIDs scan into pgtype.UUID: a uuid.UUID destination goes
		// through its sql.Scanner, which formats each value as text and
		// parses it back (two allocations per column per row).
		id, worker, lease pgtype.UUID
	)
	err := row.Scan(&id, &t.Type, &params, &t.Owner, &t.Priority, &t.Pool, &t.DependsOn,
		&t.MaxAttempts, &t.MaxLost, &timeoutMS, &idemKey, &state, &t.Attempt, &t.Failures,
		&t.Lost, &t.DepsPending, &worker, &lease, &t.LeaseExpiresAt, &result,
		&t.Error, &t.Progress, &t.ProgressMsg, &t.CreatedAt, &t.RunAfter, &t.StartedAt,
		&t.FinishedAt, &t.UpdatedAt)
	if err != nil {
		return nil, err
	}
	t.ID = id.Bytes
	if worker.Valid {
		w := uuid.UUID(worker.Bytes)
		t.WorkerID = &w
	}
	if lease.Valid {
		l := uuid.UUID(lease.Bytes)
		t.LeaseToken = &l
	}
	t.Params = json.RawMessage(params)
	if result != nil {
		t.Result = json.RawMessage(result)
	}
	if idemKey != nil {
		t.IdempotencyKey = *idemKey
	}
	if len(t.DependsOn) == 0 {
		t.DependsOn = nil
	}
	t.Timeout = time.Duration(timeoutMS) * time.Millisecond
	t.State = core.TaskState(state)
	t.CreatedAt = t.CreatedAt.UTC()
	t.RunAfter = t.RunAfter.UTC()
	t.UpdatedAt = t.UpdatedAt.UTC()
	t.LeaseExpiresAt = utcPtr(t.LeaseExpiresAt)
	t.StartedAt = utcPtr(t.StartedAt)
	t.FinishedAt = utcPtr(t.FinishedAt)
	return &t, nil
}

// collectTasks scans every row of rows.
func collectTasks(rows pgx.Rows) ([]*core.Task, error) {
	defer rows.Close()
	var out []*core.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// jsonArg turns a raw JSON document into a query argument for a json
// column: nil for SQL NULL, else the text.
func jsonArg(raw json.RawMessage) any {
	if raw == nil {
		return nil
	}
	return string(raw)
}

// nullTime returns nil for the zero time, else t.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// uuidStrings renders ids for text[] parameters.
func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// workerCols is the column list of worker queries, in scanWorker order.
const workerCols = `id, pool, provider, placement, gpu_type, region, instance_id, state, failure,
	reason, token_hash, concurrency, price_per_hour, agent_version, gpus, metrics, tasks_done,
	tasks_failed, created_at, state_changed_at, ready_at, last_heartbeat_at, last_task_at,
	terminated_at, delete_attempts, missing_lists`

var workerColsW = prefixed("w", workerCols)

// scanWorker scans a row selected with workerCols followed by extra
// destinations.
func scanWorker(row pgx.Row, extra ...any) (*core.Worker, error) {
	var (
		w       core.Worker
		state   string
		failure string
		gpus    []byte
		metrics []byte
	)
	dest := []any{&w.ID, &w.Pool, &w.Provider, &w.Placement, &w.GPUType, &w.Region, &w.InstanceID,
		&state, &failure, &w.Reason, &w.TokenHash, &w.Concurrency, &w.PricePerHour, &w.AgentVersion,
		&gpus, &metrics, &w.TasksDone, &w.TasksFailed, &w.CreatedAt, &w.StateChangedAt, &w.ReadyAt,
		&w.LastHeartbeatAt, &w.LastTaskAt, &w.TerminatedAt, &w.DeleteAttempts, &w.MissingLists}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	w.State = core.WorkerState(state)
	w.Failure = core.FailureClass(failure)
	if gpus != nil {
		if err := json.Unmarshal(gpus, &w.GPUs); err != nil {
			return nil, err
		}
	}
	if metrics != nil {
		w.Metrics = json.RawMessage(metrics)
	}
	w.CreatedAt = w.CreatedAt.UTC()
	w.StateChangedAt = w.StateChangedAt.UTC()
	w.ReadyAt = utcPtr(w.ReadyAt)
	w.LastHeartbeatAt = utcPtr(w.LastHeartbeatAt)
	w.LastTaskAt = utcPtr(w.LastTaskAt)
	w.TerminatedAt = utcPtr(w.TerminatedAt)
	return &w, nil
}
