package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// EventInsertMany appends events in one transaction and assigns their IDs.
// Callers set Time from their clock; the store never reads the wall clock.
func (s *Store) EventInsertMany(ctx context.Context, events []*core.Event) error {
	if len(events) == 0 {
		return nil
	}
	return s.inTx(ctx, "insert events", func(tx *sql.Tx) error {
		for _, e := range events {
			res, err := tx.ExecContext(ctx, `INSERT INTO events (time, kind, pool, worker_id, task_id, message, data)
				VALUES (?, ?, ?, ?, ?, ?, ?)`, micros(e.Time), string(e.Kind), e.Pool, e.WorkerID, e.TaskID, e.Message, nullJSON(e.Data))
			if err != nil {
				return fmt.Errorf("insert events: %w", err)
			}
			if e.ID, err = res.LastInsertId(); err != nil {
				return fmt.Errorf("insert events: id: %w", err)
			}
			e.Time = truncTime(e.Time)
		}
		return nil
	})
}

// EventList lists events newest first.
func (s *Store) EventList(ctx context.Context, params *store.EventListParams) ([]*core.Event, error) {
	limit, err := store.ListLimit(params.Limit, store.DefaultEventListLimit, store.MaxEventListLimit)
	if err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if len(params.Kinds) > 0 {
		where = append(where, "kind IN ("+placeholders(len(params.Kinds))+")")
		for _, k := range params.Kinds {
			args = append(args, string(k))
		}
	}
	for _, f := range []struct{ col, val string }{{"pool", params.Pool}, {"worker_id", params.WorkerID}, {"task_id", params.TaskID}} {
		if f.val != "" {
			where = append(where, f.col+" = ?")
			args = append(args, f.val)
		}
	}
	if !params.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, micros(params.Since))
	}
	if params.BeforeID > 0 {
		where = append(where, "id < ?")
		args = append(args, params.BeforeID)
	}
	order := " ORDER BY id DESC LIMIT ?"
	if params.AfterID > 0 {
		where = append(where, "id > ?")
		args = append(args, params.AfterID)
		order = " ORDER BY id LIMIT ?"
	}
	q := `SELECT id, time, kind, pool, worker_id, task_id, message, data FROM events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += order
	args = append(args, limit)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	out := []*core.Event{}
	for rows.Next() {
		var e core.Event
		var t int64
		var kind string
		var data []byte
		if err := rows.Scan(&e.ID, &t, &kind, &e.Pool, &e.WorkerID, &e.TaskID, &e.Message, &data); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Time = fromMicros(t)
		e.Kind = core.EventKind(kind)
		if len(data) > 0 {
			e.Data = json.RawMessage(data)
		}
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// LogInsertMany appends log lines in one transaction and assigns their IDs.
func (s *Store) LogInsertMany(ctx context.Context, lines []*core.LogLine) error {
	if len(lines) == 0 {
		return nil
	}
	return s.inTx(ctx, "insert logs", func(tx *sql.Tx) error {
		for _, l := range lines {
			res, err := tx.ExecContext(ctx, `INSERT INTO logs (time, worker_id, task_id, stream, line) VALUES (?, ?, ?, ?, ?)`,
				micros(l.Time), l.WorkerID, l.TaskID, l.Stream, l.Line)
			if err != nil {
				return fmt.Errorf("insert logs: %w", err)
			}
			if l.ID, err = res.LastInsertId(); err != nil {
				return fmt.Errorf("insert logs: id: %w", err)
			}
		}
		return nil
	})
}

// LogList lists log lines oldest first.
func (s *Store) LogList(ctx context.Context, params *store.LogListParams) ([]*core.LogLine, error) {
	limit, err := store.ListLimit(params.Limit, store.DefaultLogListLimit, store.MaxLogListLimit)
	if err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if params.WorkerID != "" {
		where = append(where, "worker_id = ?")
		args = append(args, params.WorkerID)
	}
	if params.TaskID != "" {
		where = append(where, "task_id = ?")
		args = append(args, params.TaskID)
	}
	if params.AfterID > 0 {
		where = append(where, "id > ?")
		args = append(args, params.AfterID)
	}
	q := `SELECT id, time, worker_id, task_id, stream, line FROM logs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id LIMIT ?"
	args = append(args, limit)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	defer rows.Close()
	out := []*core.LogLine{}
	for rows.Next() {
		var l core.LogLine
		var t int64
		if err := rows.Scan(&l.ID, &t, &l.WorkerID, &l.TaskID, &l.Stream, &l.Line); err != nil {
			return nil, fmt.Errorf("list logs: %w", err)
		}
		l.Time = fromMicros(t)
		out = append(out, &l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	return out, nil
}

// Prune deletes events and logs older than before and final tasks finished
// before it. It returns the number of rows deleted.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	total := 0
	err := s.inTx(ctx, "prune", func(tx *sql.Tx) error {
		b := micros(before)
		for _, q := range []string{
			`DELETE FROM events WHERE time < ?`,
			`DELETE FROM logs WHERE time < ?`,
			`DELETE FROM tasks WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NOT NULL AND finished_at < ?`,
		} {
			res, err := tx.ExecContext(ctx, q, b)
			if err != nil {
				return fmt.Errorf("prune: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("prune: %w", err)
			}
			total += int(n)
		}
		return nil
	})
	return total, err
}

// BreakerGetAll returns every persisted breaker state, by key.
func (s *Store) BreakerGetAll(ctx context.Context) ([]*core.BreakerState, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT state FROM breakers ORDER BY key`)
	if err != nil {
		return nil, fmt.Errorf("load breakers: %w", err)
	}
	defer rows.Close()
	out := []*core.BreakerState{}
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("load breakers: %w", err)
		}
		var st core.BreakerState
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("load breakers: decode: %w", err)
		}
		out = append(out, &st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load breakers: %w", err)
	}
	return out, nil
}

// BreakerPut upserts one breaker state.
func (s *Store) BreakerPut(ctx context.Context, state *core.BreakerState) error {
	b, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("save breaker %s: encode: %w", state.Key, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO breakers (key, state, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
		state.Key, string(b), micros(state.UpdatedAt))
	if err != nil {
		return fmt.Errorf("save breaker %s: %w", state.Key, err)
	}
	return nil
}

// LeaderAttemptElect takes, keeps or is refused the single leader lease;
// see store.Store.
func (s *Store) LeaderAttemptElect(ctx context.Context, params *store.LeaderElectParams) (bool, error) {
	if params.LeaderID == "" {
		return false, core.Invalid("leader_id", "must not be empty")
	}
	if params.TTL <= 0 {
		return false, core.Invalid("ttl", "must be positive, got %s", params.TTL)
	}
	var ok bool
	err := s.inTx(ctx, "elect leader", func(tx *sql.Tx) error {
		now := micros(params.Now)
		if _, err := tx.ExecContext(ctx, `DELETE FROM leader WHERE expires_at < ?`, now); err != nil {
			return fmt.Errorf("elect leader: drop expired: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `INSERT INTO leader (name, leader_id, elected_at, expires_at) VALUES ('default', ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at WHERE leader.leader_id = excluded.leader_id
			RETURNING leader_id`, params.LeaderID, now, micros(params.Now.Add(params.TTL)))
		if err != nil {
			return fmt.Errorf("elect leader: %w", err)
		}
		ok = rows.Next()
		rows.Close()
		return rows.Err()
	})
	return ok, err
}

// LeaderResign gives up leadership if leaderID holds it.
func (s *Store) LeaderResign(ctx context.Context, leaderID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM leader WHERE leader_id = ?`, leaderID); err != nil {
		return fmt.Errorf("resign leadership: %w", err)
	}
	return nil
}

// LeaderGet returns the current leader id and lease expiry ("" if none).
func (s *Store) LeaderGet(ctx context.Context) (string, time.Time, error) {
	var id string
	var exp int64
	err := s.db.QueryRowContext(ctx, `SELECT leader_id, expires_at FROM leader WHERE name = 'default'`).Scan(&id, &exp)
	if isNoRows(err) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("get leader: %w", err)
	}
	return id, fromMicros(exp), nil
}

// KVPut upserts a value.
func (s *Store) KVPut(ctx context.Context, key string, value json.RawMessage, now time.Time) error {
	if key == "" {
		return core.Invalid("key", "must not be empty")
	}
	if !json.Valid(value) {
		return core.Invalid("value", "must be valid JSON")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, key, string(value), micros(now))
	if err != nil {
		return fmt.Errorf("kv put %s: %w", key, err)
	}
	return nil
}

// KVGet returns the value under key or core.ErrNotFound.
func (s *Store) KVGet(ctx context.Context, key string) (json.RawMessage, error) {
	var v []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT value FROM kv WHERE key = ?`, key).Scan(&v)
	if isNoRows(err) {
		return nil, core.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("kv get %s: %w", key, err)
	}
	return json.RawMessage(v), nil
}

// KVList returns every value whose key starts with prefix (literally).
func (s *Store) KVList(ctx context.Context, prefix string) (map[string]json.RawMessage, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT key, value FROM kv WHERE substr(key, 1, length(?)) = ? ORDER BY key`, prefix, prefix)
	if err != nil {
		return nil, fmt.Errorf("kv list %s: %w", prefix, err)
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("kv list %s: %w", prefix, err)
		}
		out[k] = json.RawMessage(v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("kv list %s: %w", prefix, err)
	}
	return out, nil
}

// KVDelete deletes key; absent keys are not an error.
func (s *Store) KVDelete(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM kv WHERE key = ?`, key); err != nil {
		return fmt.Errorf("kv delete %s: %w", key, err)
	}
	return nil
}
