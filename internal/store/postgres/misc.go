package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/jackc/pgx/v5"
)

// timesArg renders times for a timestamptz[] parameter; a zero time becomes
// NULL and the statement substitutes the database's time (the only place
// the store reads a clock, for callers that did not stamp their rows).
func timesArg(ts []time.Time) []*time.Time {
	out := make([]*time.Time, len(ts))
	for i := range ts {
		if !ts[i].IsZero() {
			out[i] = &ts[i]
		}
	}
	return out
}

// EventInsertMany appends events and fills in their IDs (and Time where
// it was zero).
func (s *Store) EventInsertMany(ctx context.Context, events []*core.Event) error {
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	times := make([]time.Time, n)
	kinds, pools, workers, tasks, msgs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	data := make([]*string, n)
	for i, e := range events {
		times[i], kinds[i], pools[i], workers[i], tasks[i], msgs[i] = e.Time, string(e.Kind), e.Pool, e.WorkerID, e.TaskID, e.Message
		if e.Data != nil {
			d := string(e.Data)
			data[i] = &d
		}
	}
	rows, err := s.pool.Query(ctx, `INSERT INTO events (time, kind, pool, worker_id, task_id, message, data)
		SELECT COALESCE(t, now()), k, p, w, tk, m, d::json
		FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
		     WITH ORDINALITY AS i(t, k, p, w, tk, m, d, ord)
		ORDER BY ord
		RETURNING id, time`, timesArg(times), kinds, pools, workers, tasks, msgs, data)
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	type idTime struct {
		id int64
		t  time.Time
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (idTime, error) {
		var it idTime
		err := r.Scan(&it.id, &it.t)
		return it, err
	})
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	if len(got) != n {
		return fmt.Errorf("insert events: %d ids for %d events", len(got), n)
	}
	// A single INSERT draws ids in insertion order, which follows ord.
	slices.SortFunc(got, func(a, b idTime) int { return cmp.Compare(a.id, b.id) })
	for i, e := range events {
		e.ID = got[i].id
		if e.Time.IsZero() {
			e.Time = got[i].t.UTC()
		}
	}
	return nil
}

// EventList lists events, newest first.
func (s *Store) EventList(ctx context.Context, params *store.EventListParams) ([]*core.Event, error) {
	limit, err := store.ListLimit(params.Limit, store.DefaultEventListLimit, store.MaxEventListLimit)
	if err != nil {
		return nil, err
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if len(params.Kinds) > 0 {
		k := make([]string, len(params.Kinds))
		for i, kind := range params.Kinds {
			k[i] = string(kind)
		}
		where = append(where, "kind = ANY("+arg(k)+"::text[])")
	}
	if params.Pool != "" {
		where = append(where, "pool = "+arg(params.Pool))
	}
	if params.WorkerID != "" {
		where = append(where, "worker_id = "+arg(params.WorkerID))
	}
	if params.TaskID != "" {
		where = append(where, "task_id = "+arg(params.TaskID))
	}
	if !params.Since.IsZero() {
		where = append(where, "time >= "+arg(params.Since))
	}
	if params.BeforeID > 0 {
		where = append(where, "id < "+arg(params.BeforeID))
	}
	order := " ORDER BY id DESC LIMIT "
	if params.AfterID > 0 {
		where = append(where, "id > "+arg(params.AfterID))
		order = " ORDER BY id LIMIT "
	}
	q := `SELECT id, time, kind, pool, worker_id, task_id, message, data FROM events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += order + arg(limit)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []*core.Event
	for rows.Next() {
		var (
			e    core.Event
			kind string
			data []byte
		)
		if err := rows.Scan(&e.ID, &e.Time, &kind, &e.Pool, &e.WorkerID, &e.TaskID, &e.Message, &data); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Time = e.Time.UTC()
		e.Kind = core.EventKind(kind)
		if data != nil {
			e.Data = json.RawMessage(data)
		}
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// LogInsertMany appends log lines and fills in their IDs.
func (s *Store) LogInsertMany(ctx context.Context, lines []*core.LogLine) error {
	if len(lines) == 0 {
		return nil
	}
	n := len(lines)
	times := make([]time.Time, n)
	workers, tasks, streams, texts := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, l := range lines {
		times[i], workers[i], tasks[i], streams[i], texts[i] = l.Time, l.WorkerID, l.TaskID, l.Stream, l.Line
	}
	rows, err := s.pool.Query(ctx, `INSERT INTO logs (time, worker_id, task_id, stream, line)
		SELECT COALESCE(t, now()), w, tk, st, l
		FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[])
		     WITH ORDINALITY AS i(t, w, tk, st, l, ord)
		ORDER BY ord
		RETURNING id`, timesArg(times), workers, tasks, streams, texts)
	if err != nil {
		return fmt.Errorf("insert logs: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fmt.Errorf("insert logs: %w", err)
	}
	if len(got) != n {
		return fmt.Errorf("insert logs: %d ids for %d lines", len(got), n)
	}
	slices.Sort(got)
	for i, l := range lines {
		l.ID = got[i]
	}
	return nil
}

// LogList lists log lines, oldest first.
func (s *Store) LogList(ctx context.Context, params *store.LogListParams) ([]*core.LogLine, error) {
	limit, err := store.ListLimit(params.Limit, store.DefaultLogListLimit, store.MaxLogListLimit)
	if err != nil {
		return nil, err
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if params.WorkerID != "" {
		where = append(where, "worker_id = "+arg(params.WorkerID))
	}
	if params.TaskID != "" {
		where = append(where, "task_id = "+arg(params.TaskID))
	}
	if params.AfterID > 0 {
		where = append(where, "id > "+arg(params.AfterID))
	}
	q := `SELECT id, time, worker_id, task_id, stream, line FROM logs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id LIMIT " + arg(limit)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	defer rows.Close()
	var out []*core.LogLine
	for rows.Next() {
		var l core.LogLine
		if err := rows.Scan(&l.ID, &l.Time, &l.WorkerID, &l.TaskID, &l.Stream, &l.Line); err != nil {
			return nil, fmt.Errorf("list logs: %w", err)
		}
		l.Time = l.Time.UTC()
		out = append(out, &l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	return out, nil
}

// Prune deletes events and logs older than before, and final tasks (with
// their dependency edges) finished before before. It returns the number of
// events, logs and tasks deleted.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	total := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, q := range []string{
			`DELETE FROM events WHERE time < $1`,
			`DELETE FROM logs WHERE time < $1`,
		} {
			tag, err := tx.Exec(ctx, q, before)
			if err != nil {
				return err
			}
			total += int(tag.RowsAffected())
		}
		var n int
		err := tx.QueryRow(ctx, `WITH gone AS (
				DELETE FROM tasks
				WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < $1
				RETURNING id
			), edges_from AS (
				DELETE FROM task_deps WHERE task_id IN (SELECT id FROM gone)
			), edges_to AS (
				DELETE FROM task_deps WHERE dep_id IN (SELECT id FROM gone)
			)
			SELECT count(*)::int FROM gone`, before).Scan(&n)
		if err != nil {
			return err
		}
		total += n
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	return total, nil
}

// BreakerGetAll returns every persisted breaker state, by key.
func (s *Store) BreakerGetAll(ctx context.Context) ([]*core.BreakerState, error) {
	rows, err := s.pool.Query(ctx, `SELECT state FROM breakers ORDER BY key`)
	if err != nil {
		return nil, fmt.Errorf("load breakers: %w", err)
	}
	raw, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("load breakers: %w", err)
	}
	out := make([]*core.BreakerState, 0, len(raw))
	for _, r := range raw {
		var b core.BreakerState
		if err := json.Unmarshal(r, &b); err != nil {
			return nil, fmt.Errorf("load breakers: decode: %w", err)
		}
		out = append(out, &b)
	}
	return out, nil
}

// BreakerPut saves one breaker state (upsert by key).
func (s *Store) BreakerPut(ctx context.Context, state *core.BreakerState) error {
	if state.Key == "" {
		return core.Invalid("key", "breaker key must not be empty")
	}
	b, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("save breaker %s: encode: %w", state.Key, err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO breakers (key, state, updated_at) VALUES ($1, $2::json, $3)
		ON CONFLICT (key) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at`,
		state.Key, string(b), state.UpdatedAt)
	if err != nil {
		return fmt.Errorf("save breaker %s: %w", state.Key, err)
	}
	return nil
}

// LeaderAttemptElect tries to become (or stay) leader until Now+TTL: River's
// single-row lease. The row is taken when it is absent, already ours, or
// expired (expires_at <= Now).
func (s *Store) LeaderAttemptElect(ctx context.Context, params *store.LeaderElectParams) (bool, error) {
	if params.LeaderID == "" {
		return false, core.Invalid("leader_id", "must not be empty")
	}
	if params.TTL <= 0 {
		return false, core.Invalid("ttl", "must be positive, got %s", params.TTL)
	}
	var id string
	err := s.pool.QueryRow(ctx, `INSERT INTO leader (name, leader_id, elected_at, expires_at)
		VALUES ('default', $1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET
			leader_id = EXCLUDED.leader_id,
			elected_at = CASE WHEN leader.leader_id = EXCLUDED.leader_id THEN leader.elected_at ELSE EXCLUDED.elected_at END,
			expires_at = EXCLUDED.expires_at
		WHERE leader.leader_id = EXCLUDED.leader_id OR leader.expires_at <= EXCLUDED.elected_at
		RETURNING leader_id`, params.LeaderID, params.Now, params.Now.Add(params.TTL)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("elect leader: %w", err)
	}
	return id == params.LeaderID, nil
}

// LeaderResign gives up leadership if leaderID holds it.
func (s *Store) LeaderResign(ctx context.Context, leaderID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM leader WHERE leader_id = $1`, leaderID); err != nil {
		return fmt.Errorf("resign leadership: %w", err)
	}
	return nil
}

// LeaderGet returns the current leader id and expiry ("" if none).
func (s *Store) LeaderGet(ctx context.Context) (string, time.Time, error) {
	var (
		id  string
		exp time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT leader_id, expires_at FROM leader WHERE name = 'default'`).Scan(&id, &exp)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("read leader: %w", err)
	}
	return id, exp.UTC(), nil
}

// KVPut upserts a small value under key.
func (s *Store) KVPut(ctx context.Context, key string, value json.RawMessage, now time.Time) error {
	if key == "" {
		return core.Invalid("key", "must not be empty")
	}
	if value == nil {
		value = json.RawMessage("null")
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO kv (key, value, updated_at) VALUES ($1, $2::json, $3)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at`,
		key, string(value), now)
	if err != nil {
		return fmt.Errorf("put kv %q: %w", key, err)
	}
	return nil
}

// KVGet returns the value or core.ErrNotFound.
func (s *Store) KVGet(ctx context.Context, key string) (json.RawMessage, error) {
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM kv WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get kv %q: %w", key, core.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get kv %q: %w", key, err)
	}
	return json.RawMessage(v), nil
}

// KVList returns all values whose key starts with prefix.
func (s *Store) KVList(ctx context.Context, prefix string) (map[string]json.RawMessage, error) {
	rows, err := s.pool.Query(ctx, `SELECT key, value FROM kv WHERE starts_with(key, $1) ORDER BY key`, prefix)
	if err != nil {
		return nil, fmt.Errorf("list kv %q: %w", prefix, err)
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var (
			k string
			v []byte
		)
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("list kv %q: %w", prefix, err)
		}
		out[k] = json.RawMessage(v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list kv %q: %w", prefix, err)
	}
	return out, nil
}

// KVDelete deletes key (no error if absent).
func (s *Store) KVDelete(ctx context.Context, key string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM kv WHERE key = $1`, key); err != nil {
		return fmt.Errorf("delete kv %q: %w", key, err)
	}
	return nil
}
