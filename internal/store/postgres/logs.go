package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/jackc/pgx/v5"
)

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
