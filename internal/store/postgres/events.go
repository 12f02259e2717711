package postgres

import (
	"cmp"
	"context"
	"encoding/json"
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
	out, err = scanEvents(rows, out)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// scanEvents appends the events of rows (columns id, time, kind, pool,
// worker_id, task_id, message, data) to out and closes rows.
func scanEvents(rows pgx.Rows, out []*core.Event) ([]*core.Event, error) {
	defer rows.Close()
	for rows.Next() {
		var (
			e    core.Event
			kind string
			data []byte
		)
		if err := rows.Scan(&e.ID, &e.Time, &kind, &e.Pool, &e.WorkerID, &e.TaskID, &e.Message, &data); err != nil {
			return nil, err
		}
		e.Time = e.Time.UTC()
		e.Kind = core.EventKind(kind)
		if data != nil {
			e.Data = json.RawMessage(data)
		}
		out = append(out, &e)
	}
	return out, rows.Err()
}
