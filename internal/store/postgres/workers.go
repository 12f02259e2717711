package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// gpusArg renders GPUs for a json column (NULL when there are none).
func gpusArg(gpus []core.GPU) (any, error) {
	if gpus == nil {
		return nil, nil
	}
	b, err := json.Marshal(gpus)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// WorkerInsert inserts a worker row. A duplicate id is core.ErrConflict.
func (s *Store) WorkerInsert(ctx context.Context, w *core.Worker) error {
	gpus, err := gpusArg(w.GPUs)
	if err != nil {
		return fmt.Errorf("insert worker: encode gpus: %w", err)
	}
	state := w.State
	if state == "" {
		state = core.WorkerRequested
	}
	changed := w.StateChangedAt
	if changed.IsZero() {
		changed = w.CreatedAt
	}
	err = s.fenced(ctx, func(q querier) error {
		_, err := q.Exec(ctx, `INSERT INTO workers (id, pool, provider, placement, gpu_type, region,
			instance_id, state, failure, reason, token_hash, concurrency, price_per_hour, agent_version,
			gpus, metrics, tasks_done, tasks_failed, created_at, state_changed_at, ready_at,
			last_heartbeat_at, last_task_at, terminated_at, delete_attempts, missing_lists)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::json, $16::json,
			$17, $18, $19, $20, $21, $22, $23, $24, $25, $26)`,
			w.ID, w.Pool, w.Provider, w.Placement, w.GPUType, w.Region, w.InstanceID, string(state),
			string(w.Failure), w.Reason, w.TokenHash, w.Concurrency, w.PricePerHour, w.AgentVersion,
			gpus, jsonArg(w.Metrics), w.TasksDone, w.TasksFailed, w.CreatedAt, changed, w.ReadyAt,
			w.LastHeartbeatAt, w.LastTaskAt, w.TerminatedAt, w.DeleteAttempts, w.MissingLists)
		return err
	})
	if isUniqueViolation(err) {
		return fmt.Errorf("insert worker %s: %w: id already exists", w.ID, core.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("insert worker %s: %w", w.ID, err)
	}
	return nil
}

// runningCount is the subquery that fills Worker.Running.
const runningCount = `(SELECT count(*)::int FROM tasks t WHERE t.state = 'running' AND t.worker_id = w.id)`

// WorkerGet returns one worker or core.ErrNotFound.
func (s *Store) WorkerGet(ctx context.Context, id uuid.UUID) (*core.Worker, error) {
	var running int
	w, err := scanWorker(s.pool.QueryRow(ctx, `SELECT `+workerColsW+`, `+runningCount+`
		FROM workers w WHERE w.id = $1`, id), &running)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get worker %s: %w", id, core.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get worker %s: %w", id, err)
	}
	w.Running = running
	return w, nil
}

// liveStates are the states store.WorkerListParams.LiveOnly selects
// (besides failed rows not yet terminated).
func liveStates() []string {
	var live []string
	for _, st := range []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting,
		core.WorkerReady, core.WorkerDraining, core.WorkerTerminating, core.WorkerTerminated, core.WorkerFailed} {
		if st.Live() || st == core.WorkerTerminating {
			live = append(live, string(st))
		}
	}
	return live
}

// WorkerList returns workers matching the filter, oldest first, with
// Running filled in, in one query.
func (s *Store) WorkerList(ctx context.Context, params *store.WorkerListParams) ([]*core.Worker, error) {
	if params.Limit < 0 {
		return nil, core.Invalid("limit", "must not be negative, got %d", params.Limit)
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if len(params.States) > 0 {
		st := make([]string, len(params.States))
		for i, s := range params.States {
			st[i] = string(s)
		}
		where = append(where, "w.state = ANY("+arg(st)+"::text[])")
	}
	if params.Pool != "" {
		where = append(where, "w.pool = "+arg(params.Pool))
	}
	if params.LiveOnly {
		where = append(where, "(w.state = ANY("+arg(liveStates())+"::text[]) OR (w.state = 'failed' AND w.terminated_at IS NULL))")
	}
	runningFilter := ""
	if len(params.IDs) > 0 {
		// Count only these workers' running tasks, not the whole set.
		ids := arg(uuidStrings(params.IDs)) + "::uuid[]"
		where = append(where, "w.id = ANY("+ids+")")
		runningFilter = " AND worker_id = ANY(" + ids + ")"
	}
	cols, scan := workerColsW, scanWorker
	if params.Brief {
		cols, scan = workerBriefColsW, scanWorkerBrief
	}
	q := `SELECT ` + cols + `, COALESCE(r.n, 0) FROM workers w
		LEFT JOIN (SELECT worker_id, count(*)::int AS n FROM tasks WHERE state = 'running'` + runningFilter + ` GROUP BY worker_id) r
		  ON r.worker_id = w.id`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY w.created_at, w.id"
	if params.Limit > 0 {
		q += " LIMIT " + arg(params.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	defer rows.Close()
	var out []*core.Worker
	for rows.Next() {
		var running int
		w, err := scan(rows, &running)
		if err != nil {
			return nil, fmt.Errorf("list workers: %w", err)
		}
		w.Running = running
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return out, nil
}

// WorkerUpdate applies a partial update; see store.Store.
func (s *Store) WorkerUpdate(ctx context.Context, params *store.WorkerUpdateParams) (*core.Worker, error) {
	var (
		sets []string
		args = []any{params.ID}
	)
	set := func(col string, v any) {
		args = append(args, v)
		sets = append(sets, fmt.Sprintf("%s = $%d", col, len(args)))
	}
	if params.State != nil {
		args = append(args, string(*params.State), params.Now)
		n := len(args)
		sets = append(sets, fmt.Sprintf("state = $%d", n-1),
			fmt.Sprintf("state_changed_at = CASE WHEN w.state <> $%d THEN $%d::timestamptz ELSE w.state_changed_at END", n-1, n))
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
		g, err := gpusArg(params.GPUs)
		if err != nil {
			return nil, fmt.Errorf("update worker %s: encode gpus: %w", params.ID, err)
		}
		args = append(args, g)
		sets = append(sets, fmt.Sprintf("gpus = $%d::json", len(args)))
	}
	if params.ReadyAt != nil {
		set("ready_at", *params.ReadyAt)
	}
	if params.TerminatedAt != nil {
		set("terminated_at", *params.TerminatedAt)
	}
	if params.DeleteAttempts != nil {
		set("delete_attempts", *params.DeleteAttempts)
	}
	if params.MissingLists != nil {
		set("missing_lists", *params.MissingLists)
	}
	if params.LastHeartbeat != nil {
		set("last_heartbeat_at", *params.LastHeartbeat)
	}
	if len(sets) == 0 {
		// Nothing to change, but FromStates still applies.
		sets = append(sets, "state = w.state")
	}
	where := "w.id = $1"
	if len(params.FromStates) > 0 {
		from := make([]string, len(params.FromStates))
		for i, st := range params.FromStates {
			from[i] = string(st)
		}
		args = append(args, from)
		where += fmt.Sprintf(" AND w.state = ANY($%d::text[])", len(args))
	}
	q := `UPDATE workers w SET ` + strings.Join(sets, ", ") + ` WHERE ` + where +
		` RETURNING ` + workerColsW + `, ` + runningCount
	var (
		running int
		w       *core.Worker
	)
	err := s.fenced(ctx, func(qr querier) error {
		var err error
		w, err = scanWorker(qr.QueryRow(ctx, q, args...), &running)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err == nil && w == nil {
		err = pgx.ErrNoRows
	}
	if errors.Is(err, pgx.ErrNoRows) {
		var st string
		err := s.pool.QueryRow(ctx, `SELECT state FROM workers WHERE id = $1`, params.ID).Scan(&st)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("update worker %s: %w", params.ID, core.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("update worker %s: %w", params.ID, err)
		}
		return nil, fmt.Errorf("update worker %s: %w: worker is %s", params.ID, core.ErrConflict, st)
	}
	if err != nil {
		return nil, fmt.Errorf("update worker %s: %w", params.ID, err)
	}
	w.Running = running
	return w, nil
}

// WorkerHeartbeat records heartbeats in one statement; see store.Store.
func (s *Store) WorkerHeartbeat(ctx context.Context, params []store.WorkerHeartbeatParams) error {
	if len(params) == 0 {
		return nil
	}
	ids := make([]string, len(params))
	nows := make([]time.Time, len(params))
	metrics := make([]*string, len(params))
	for i, p := range params {
		ids[i], nows[i] = p.ID.String(), p.Now
		if p.Metrics != nil {
			m := string(p.Metrics)
			metrics[i] = &m
		}
	}
	// The latest heartbeat per worker wins when a batch holds several. The
	// rows are locked in id order first, and a deadlock with a concurrent
	// claim or completion (which lock worker rows too) is retried rather
	// than failing every heartbeat of the batch.
	err := retryDeadlock(ctx, func() error {
		_, err := s.pool.Exec(ctx, `WITH h AS (
				SELECT DISTINCT ON (id) id, now, metrics
				FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS i(id, now, metrics)
				ORDER BY id, now DESC
			), locked AS (
				SELECT w.id FROM workers w JOIN h ON h.id = w.id ORDER BY w.id FOR UPDATE OF w
			)
			UPDATE workers w SET last_heartbeat_at = h.now,
				metrics = COALESCE(h.metrics::json, w.metrics)
			FROM h, locked WHERE w.id = h.id AND locked.id = h.id`, ids, nows, metrics)
		return err
	})
	if err != nil {
		return fmt.Errorf("record heartbeats: %w", err)
	}
	return nil
}
