package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// TaskCompleteOutputs completes one held task and records its outputs in
// one transaction; see store.OutputStore.
func (s *Store) TaskCompleteOutputs(ctx context.Context, params *store.TaskCompleteOutputsParams) error {
	err := retryDeadlock(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			lost, err := completeOne(ctx, tx, []*store.TaskCompleteParams{{
				Now: params.Now, WorkerID: params.WorkerID, Items: []store.TaskCompletion{params.Completion},
			}})
			if err != nil {
				return err
			}
			if len(lost[0]) > 0 {
				return core.ErrLeaseLost
			}
			return insertOutputs(ctx, tx, params.Outputs)
		})
	})
	if err != nil {
		return fmt.Errorf("complete task %s with %d outputs: %w", params.Completion.Lease.TaskID, len(params.Outputs), err)
	}
	return nil
}

// insertOutputs records outputs in one statement (one round trip, not
// one per output).
func insertOutputs(ctx context.Context, tx pgx.Tx, outs []*core.Output) error {
	if len(outs) == 0 {
		return nil
	}
	var (
		tasks    = make([]uuid.UUID, len(outs))
		names    = make([]string, len(outs))
		attempts = make([]int32, len(outs))
		sizes    = make([]int64, len(outs))
		sums     = make([]string, len(outs))
		types    = make([]string, len(outs))
		keys     = make([]string, len(outs))
		created  = make([]time.Time, len(outs))
		expires  = make([]time.Time, len(outs))
	)
	for i, o := range outs {
		tasks[i], names[i], attempts[i], sizes[i] = o.TaskID, o.Name, int32(o.Attempt), o.Size
		sums[i], types[i], keys[i], created[i], expires[i] = o.SHA256, o.ContentType, o.BlobKey, o.CreatedAt, o.ExpiresAt
	}
	if _, err := tx.Exec(ctx, `INSERT INTO task_outputs (`+outputCols+`)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::integer[], $4::bigint[], $5::text[], $6::text[], $7::text[],
			$8::timestamptz[], $9::timestamptz[])`,
		tasks, names, attempts, sizes, sums, types, keys, created, expires); err != nil {
		return fmt.Errorf("record %d outputs of task %s: %w", len(outs), outs[0].TaskID, err)
	}
	return nil
}

const outputCols = `task_id, name, attempt, size, sha256, content_type, blob_key, created_at, expires_at`

func scanOutputs(rows pgx.Rows) ([]*core.Output, error) {
	defer rows.Close()
	out := []*core.Output{}
	for rows.Next() {
		var o core.Output
		if err := rows.Scan(&o.TaskID, &o.Name, &o.Attempt, &o.Size, &o.SHA256, &o.ContentType, &o.BlobKey, &o.CreatedAt, &o.ExpiresAt); err != nil {
			return nil, err
		}
		o.CreatedAt, o.ExpiresAt = o.CreatedAt.UTC(), o.ExpiresAt.UTC()
		out = append(out, &o)
	}
	return out, rows.Err()
}

// OutputList returns the outputs of a task; see store.OutputStore.
func (s *Store) OutputList(ctx context.Context, taskID uuid.UUID) ([]*core.Output, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+outputCols+` FROM task_outputs WHERE task_id = $1 ORDER BY name`, taskID)
	if err != nil {
		return nil, fmt.Errorf("list outputs of task %s: %w", taskID, err)
	}
	out, err := scanOutputs(rows)
	if err != nil {
		return nil, fmt.Errorf("list outputs of task %s: %w", taskID, err)
	}
	return out, nil
}

// OutputListExpired returns expired outputs; see store.OutputStore.
func (s *Store) OutputListExpired(ctx context.Context, before time.Time, limit int) ([]*core.Output, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.pool.Query(ctx, `SELECT `+outputCols+` FROM task_outputs WHERE expires_at < $1 ORDER BY expires_at, task_id, name LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list expired outputs: %w", err)
	}
	out, err := scanOutputs(rows)
	if err != nil {
		return nil, fmt.Errorf("list expired outputs: %w", err)
	}
	return out, nil
}

// OutputDelete deletes output rows; see store.OutputStore.
func (s *Store) OutputDelete(ctx context.Context, outs []*core.Output) error {
	if len(outs) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(outs))
	names := make([]string, len(outs))
	for i, o := range outs {
		ids[i], names[i] = o.TaskID, o.Name
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM task_outputs o USING unnest($1::uuid[], $2::text[]) AS x(task_id, name)
		WHERE o.task_id = x.task_id AND o.name = x.name`, ids, names); err != nil {
		return fmt.Errorf("delete %d outputs: %w", len(outs), err)
	}
	return nil
}
