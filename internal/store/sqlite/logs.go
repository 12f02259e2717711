package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

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
