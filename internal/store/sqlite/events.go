package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

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
	out, err = scanEvents(rows, out)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// scanEvents appends the events of rows (columns id, time, kind, pool,
// worker_id, task_id, message, data) to out and closes rows.
func scanEvents(rows *sql.Rows, out []*core.Event) ([]*core.Event, error) {
	defer rows.Close()
	for rows.Next() {
		var e core.Event
		var t int64
		var kind string
		var data []byte
		if err := rows.Scan(&e.ID, &t, &kind, &e.Pool, &e.WorkerID, &e.TaskID, &e.Message, &data); err != nil {
			return nil, err
		}
		e.Time = fromMicros(t)
		e.Kind = core.EventKind(kind)
		if len(data) > 0 {
			e.Data = json.RawMessage(data)
		}
		out = append(out, &e)
	}
	return out, rows.Err()
}
