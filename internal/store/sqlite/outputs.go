package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// TaskCompleteOutputs completes one held task and records its outputs in
// one transaction; see store.OutputStore.
func (s *Store) TaskCompleteOutputs(ctx context.Context, params *store.TaskCompleteOutputsParams) error {
	return s.inTx(ctx, "complete task with outputs", func(tx *sql.Tx) error {
		lost, err := s.completeTx(ctx, tx, &store.TaskCompleteParams{
			Now: params.Now, WorkerID: params.WorkerID, Items: []store.TaskCompletion{params.Completion},
		})
		if err != nil {
			return err
		}
		if len(lost) > 0 {
			return core.ErrLeaseLost
		}
		return insertOutputs(ctx, tx, params.Outputs)
	})
}

// outputsPerInsert is how many outputs one INSERT records (9 parameters
// each, under SQLite's 999-parameter limit of older builds).
const outputsPerInsert = 100

// insertOutputs records outputs in statements of up to outputsPerInsert
// rows (one statement per output cost a parse and a step each).
func insertOutputs(ctx context.Context, tx *sql.Tx, outs []*core.Output) error {
	for len(outs) > 0 {
		n := min(len(outs), outputsPerInsert)
		args := make([]any, 0, 9*n)
		for _, o := range outs[:n] {
			args = append(args, o.TaskID.String(), o.Name, o.Attempt, o.Size, o.SHA256, o.ContentType, o.BlobKey,
				micros(o.CreatedAt), micros(o.ExpiresAt))
		}
		q := `INSERT INTO task_outputs (` + outputCols + `) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?, ?), ", n), ", ")
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("record %d outputs of task %s: %w", n, outs[0].TaskID, err)
		}
		outs = outs[n:]
	}
	return nil
}

const outputCols = `task_id, name, attempt, size, sha256, content_type, blob_key, created_at, expires_at`

func scanOutputs(rows *sql.Rows) ([]*core.Output, error) {
	defer rows.Close()
	out := []*core.Output{}
	for rows.Next() {
		var (
			o        core.Output
			id       string
			cat, exp int64
		)
		if err := rows.Scan(&id, &o.Name, &o.Attempt, &o.Size, &o.SHA256, &o.ContentType, &o.BlobKey, &cat, &exp); err != nil {
			return nil, err
		}
		tid, err := uuid.Parse(id)
		if err != nil {
			return nil, fmt.Errorf("output task id %q: %w", id, err)
		}
		o.TaskID, o.CreatedAt, o.ExpiresAt = tid, fromMicros(cat), fromMicros(exp)
		out = append(out, &o)
	}
	return out, rows.Err()
}

// OutputList returns the outputs of a task; see store.OutputStore.
func (s *Store) OutputList(ctx context.Context, taskID uuid.UUID) ([]*core.Output, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+outputCols+` FROM task_outputs WHERE task_id = ? ORDER BY name`, taskID.String())
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
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+outputCols+` FROM task_outputs WHERE expires_at < ? ORDER BY expires_at, task_id, name LIMIT ?`, micros(before), limit)
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
	return s.inTx(ctx, "delete outputs", func(tx *sql.Tx) error {
		for _, o := range outs {
			if _, err := tx.ExecContext(ctx, `DELETE FROM task_outputs WHERE task_id = ? AND name = ?`, o.TaskID.String(), o.Name); err != nil {
				return fmt.Errorf("delete output %q of task %s: %w", o.Name, o.TaskID, err)
			}
		}
		return nil
	})
}
