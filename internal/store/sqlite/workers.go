package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

const workerCols = `w.id, w.pool, w.provider, w.placement, w.gpu_type, w.region, w.instance_id, w.state, w.failure,
	w.reason, w.token_hash, w.concurrency, w.price_per_hour, w.agent_version, w.gpus, w.metrics, w.tasks_done,
	w.tasks_failed, w.created_at, w.state_changed_at, w.ready_at, w.last_heartbeat_at, w.last_task_at,
	w.terminated_at, w.delete_attempts, w.missing_lists`

// liveWorkersSQL selects the rows of store.WorkerListParams.LiveOnly.
const liveWorkersSQL = `(+w.state IN ('requested', 'provisioning', 'booting', 'ready', 'draining', 'terminating')
			OR (+w.state = 'failed' AND w.terminated_at IS NULL))`

// runningSQL counts the leases a worker holds; it is appended to workerCols.
const runningSQL = `(SELECT count(*) FROM tasks t WHERE t.state = 'running' AND t.worker_id = w.id)`

func scanWorker(sc scanner) (*core.Worker, error) {
	var (
		w                               core.Worker
		id, state, failure              string
		gpus, metrics                   []byte
		created, changed                int64
		ready, hb, lastTask, terminated sql.NullInt64
	)
	err := sc.Scan(&id, &w.Pool, &w.Provider, &w.Placement, &w.GPUType, &w.Region, &w.InstanceID, &state, &failure,
		&w.Reason, &w.TokenHash, &w.Concurrency, &w.PricePerHour, &w.AgentVersion, &gpus, &metrics, &w.TasksDone,
		&w.TasksFailed, &created, &changed, &ready, &hb, &lastTask, &terminated, &w.DeleteAttempts, &w.MissingLists,
		&w.Running)
	if err != nil {
		return nil, err
	}
	if w.ID, err = uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("parse worker id %q: %w", id, err)
	}
	w.State = core.WorkerState(state)
	w.Failure = core.FailureClass(failure)
	if len(gpus) > 0 {
		if err := json.Unmarshal(gpus, &w.GPUs); err != nil {
			return nil, fmt.Errorf("decode worker %s gpus: %w", id, err)
		}
	}
	if len(metrics) > 0 {
		w.Metrics = json.RawMessage(metrics)
	}
	w.CreatedAt = fromMicros(created)
	w.StateChangedAt = fromMicros(changed)
	w.ReadyAt = ptrTime(ready)
	w.LastHeartbeatAt = ptrTime(hb)
	w.LastTaskAt = ptrTime(lastTask)
	w.TerminatedAt = ptrTime(terminated)
	return &w, nil
}

func gpusJSON(g []core.GPU) (any, error) {
	if g == nil {
		return nil, nil
	}
	b, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("encode gpus: %w", err)
	}
	return string(b), nil
}

// WorkerInsert inserts a worker row.
func (s *Store) WorkerInsert(ctx context.Context, w *core.Worker) error {
	gpus, err := gpusJSON(w.GPUs)
	if err != nil {
		return fmt.Errorf("insert worker: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO workers (id, pool, provider, placement, gpu_type, region, instance_id,
		state, failure, reason, token_hash, concurrency, price_per_hour, agent_version, gpus, metrics, tasks_done,
		tasks_failed, created_at, state_changed_at, ready_at, last_heartbeat_at, last_task_at, terminated_at,
		delete_attempts, missing_lists) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		w.ID.String(), w.Pool, w.Provider, w.Placement, w.GPUType, w.Region, w.InstanceID, string(w.State),
		string(w.Failure), w.Reason, w.TokenHash, w.Concurrency, w.PricePerHour, w.AgentVersion, gpus,
		nullJSON(w.Metrics), w.TasksDone, w.TasksFailed, micros(w.CreatedAt), micros(w.StateChangedAt),
		nullMicros(w.ReadyAt), nullMicros(w.LastHeartbeatAt), nullMicros(w.LastTaskAt), nullMicros(w.TerminatedAt),
		w.DeleteAttempts, w.MissingLists)
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE constraint failed") {
			return fmt.Errorf("insert worker %s: already exists: %w", w.ID, core.ErrConflict)
		}
		return fmt.Errorf("insert worker %s: %w", w.ID, err)
	}
	return nil
}

func getWorker(ctx context.Context, q querier, id uuid.UUID) (*core.Worker, error) {
	w, err := scanWorker(q.QueryRowContext(ctx, `SELECT `+workerCols+`, `+runningSQL+` FROM workers w WHERE w.id = ?`, id.String()))
	if isNoRows(err) {
		return nil, core.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get worker %s: %w", id, err)
	}
	return w, nil
}

// WorkerGet returns one worker (with Running) or core.ErrNotFound.
func (s *Store) WorkerGet(ctx context.Context, id uuid.UUID) (*core.Worker, error) {
	return getWorker(ctx, s.rdb, id)
}

// WorkerList returns workers oldest first with Running filled in, in one
// query.
func (s *Store) WorkerList(ctx context.Context, params *store.WorkerListParams) ([]*core.Worker, error) {
	var where []string
	var args []any
	if len(params.States) > 0 {
		// Unary + keeps SQLite on workers_created (the ORDER BY) instead
		// of sorting the rows an index on state returns.
		where = append(where, "+w.state IN ("+placeholders(len(params.States))+")")
		for _, st := range params.States {
			args = append(args, string(st))
		}
	}
	if params.Pool != "" {
		where = append(where, "w.pool = ?")
		args = append(args, params.Pool)
	}
	if params.LiveOnly {
		where = append(where, liveWorkersSQL)
	}
	if len(params.IDs) == 0 && params.Limit <= 0 {
		return s.workerListAll(ctx, where, args, params)
	}
	running := `SELECT worker_id, count(*) AS n FROM tasks WHERE state = 'running' GROUP BY worker_id`
	if len(params.IDs) > 0 {
		// Count only these workers' running tasks, not the whole set.
		in := placeholders(len(params.IDs))
		where = append(where, "w.id IN ("+in+")")
		running = `SELECT worker_id, count(*) AS n FROM tasks WHERE state = 'running' AND worker_id IN (` + in + `) GROUP BY worker_id`
		ids := uuidArgs(params.IDs)
		args = append(append(append([]any{}, ids...), args...), ids...)
	}
	q := `SELECT ` + workerCols + `, coalesce(r.n, 0) FROM workers w
		LEFT JOIN (` + running + `) r ON r.worker_id = w.id`
	if len(params.IDs) == 0 {
		// The first Limit rows in workers_created order, no sort; each
		// lease count is one seek in tasks_running_worker.
		q = `SELECT ` + workerCols + `, ` + runningSQL + ` FROM workers w`
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY w.created_at, w.id"
	if params.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, params.Limit)
	}
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	defer rows.Close()
	out := []*core.Worker{}
	for rows.Next() {
		w, err := scanWorker(rows)
		if err != nil {
			return nil, fmt.Errorf("list workers: %w", err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return out, nil
}

// WorkerUpdate applies a partial update, guarded by FromStates; see
// store.Store.
func (s *Store) WorkerUpdate(ctx context.Context, params *store.WorkerUpdateParams) (*core.Worker, error) {
	var out *core.Worker
	err := s.inTx(ctx, "update worker", func(tx *sql.Tx) error {
		var state string
		err := tx.QueryRowContext(ctx, `SELECT state FROM workers WHERE id = ?`, params.ID.String()).Scan(&state)
		if isNoRows(err) {
			return core.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("update worker: %w", err)
		}
		if len(params.FromStates) > 0 && !slices.Contains(params.FromStates, core.WorkerState(state)) {
			return fmt.Errorf("update worker %s: state is %s, not one of %v: %w", params.ID, state, params.FromStates, core.ErrConflict)
		}
		var sets []string
		var args []any
		set := func(col string, v any) {
			sets = append(sets, col+" = ?")
			args = append(args, v)
		}
		if params.State != nil {
			set("state", string(*params.State))
			if string(*params.State) != state {
				set("state_changed_at", micros(params.Now))
			}
		}
		if params.Failure != nil {
			set("failure", string(*params.Failure))
		}
		if params.Reason != nil {
			set("reason", *params.Reason)
		}
		if params.InstanceID != nil {
			set("instance_id", *params.InstanceID)
		}
		if params.PricePerHour != nil {
			set("price_per_hour", *params.PricePerHour)
		}
		if params.AgentVersion != nil {
			set("agent_version", *params.AgentVersion)
		}
		if params.GPUs != nil {
			g, err := gpusJSON(params.GPUs)
			if err != nil {
				return fmt.Errorf("update worker: %w", err)
			}
			set("gpus", g)
		}
		for _, f := range []struct {
			col string
			v   *time.Time
		}{{"ready_at", params.ReadyAt}, {"terminated_at", params.TerminatedAt}, {"last_heartbeat_at", params.LastHeartbeat}} {
			if f.v != nil {
				set(f.col, micros(*f.v))
			}
		}
		if params.DeleteAttempts != nil {
			set("delete_attempts", *params.DeleteAttempts)
		}
		if params.MissingLists != nil {
			set("missing_lists", *params.MissingLists)
		}
		if len(sets) > 0 {
			args = append(args, params.ID.String())
			if _, err := tx.ExecContext(ctx, `UPDATE workers SET `+strings.Join(sets, ", ")+` WHERE id = ?`, args...); err != nil {
				return fmt.Errorf("update worker %s: %w", params.ID, err)
			}
		}
		out, err = getWorker(ctx, tx, params.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// WorkerHeartbeat records heartbeats in one transaction; see store.Store.
func (s *Store) WorkerHeartbeat(ctx context.Context, params []store.WorkerHeartbeatParams) error {
	if len(params) == 0 {
		return nil
	}
	return s.inTx(ctx, "worker heartbeats", func(tx *sql.Tx) error {
		for _, p := range params {
			if _, err := s.execNamed(ctx, tx, "heartbeat", micros(p.Now), nullJSON(p.Metrics), p.ID.String()); err != nil {
				return fmt.Errorf("worker heartbeats: %w", err)
			}
		}
		return nil
	})
}
