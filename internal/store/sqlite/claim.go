package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// maxClaim is the largest TaskClaimParams.Max accepted.
const maxClaim = 1000

// TaskClaim runs the claims of params in one transaction; see store.Store.
func (s *Store) TaskClaim(ctx context.Context, params []*store.TaskClaimParams) ([][]*core.Task, error) {
	for i, p := range params {
		if err := checkClaim(p); err != nil {
			return nil, fmt.Errorf("claim batch item %d: %w", i, err)
		}
	}
	out := make([][]*core.Task, len(params))
	if len(params) == 0 {
		return out, nil
	}
	err := s.inTx(ctx, "claim tasks", func(tx *sql.Tx) error { return s.claimAllTx(ctx, tx, params, out) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// TaskCompleteClaim runs the completions, then the claims, in one
// transaction; see store.Store.
func (s *Store) TaskCompleteClaim(ctx context.Context, complete []*store.TaskCompleteParams, claims []*store.TaskClaimParams) ([][]core.Lease, [][]*core.Task, error) {
	for i, p := range claims {
		if err := checkClaim(p); err != nil {
			return nil, nil, fmt.Errorf("claim batch item %d: %w", i, err)
		}
	}
	lost := make([][]core.Lease, len(complete))
	out := make([][]*core.Task, len(claims))
	err := s.inTx(ctx, "complete and claim tasks", func(tx *sql.Tx) error {
		for i, p := range complete {
			l, err := s.completeTx(ctx, tx, p)
			if err != nil {
				return fmt.Errorf("complete batch item %d: %w", i, err)
			}
			lost[i] = l
		}
		return s.claimAllTx(ctx, tx, claims, out)
	})
	if err != nil {
		return nil, nil, err
	}
	return lost, out, nil
}

// claimAllTx runs the claims of params inside tx, out[i] receiving the
// tasks of params[i].
func (s *Store) claimAllTx(ctx context.Context, tx *sql.Tx, params []*store.TaskClaimParams, out [][]*core.Task) error {
	// A claim without owner limit that got fewer than Max tasks emptied its
	// pool (at its Now): later items of that pool and time would find
	// nothing in this same transaction, so they are not queried. This keeps
	// a batch of many idle claimers as cheap as one claim.
	type poolAt struct {
		pool string
		now  time.Time
	}
	exhausted := map[poolAt]bool{}
	for i, p := range params {
		key := poolAt{p.Pool, p.Now}
		if p.OwnerLimit == 0 && exhausted[key] {
			out[i] = []*core.Task{}
			continue
		}
		ts, eligible, err := s.claimTx(ctx, tx, p)
		if err != nil {
			return fmt.Errorf("claim batch item %d: %w", i, err)
		}
		out[i] = ts
		if p.OwnerLimit == 0 && eligible && len(ts) < p.Max {
			exhausted[key] = true
		}
	}
	return nil
}

// checkClaim validates the parameters of one claim.
func checkClaim(params *store.TaskClaimParams) error {
	if params.Max < 1 || params.Max > maxClaim {
		return core.Invalid("max", "must be between 1 and %d, got %d", maxClaim, params.Max)
	}
	if params.LeaseDuration <= 0 {
		return core.Invalid("lease_duration", "must be positive, got %s", params.LeaseDuration)
	}
	if params.OwnerLimit < 0 {
		return core.Invalid("owner_limit", "must be 0 (unlimited) or more, got %d", params.OwnerLimit)
	}
	return nil
}

// claimTx is one claim inside tx, its result in claim order, and whether
// the worker may claim at all (booting or ready). Within one transaction it
// sees the tasks granted by earlier claims of the same transaction, so
// owner limits hold across a batch.
func (s *Store) claimTx(ctx context.Context, tx *sql.Tx, params *store.TaskClaimParams) ([]*core.Task, bool, error) {
	rows, err := s.queryNamed(ctx, tx, "workerState", params.WorkerID.String())
	if err != nil {
		return nil, false, fmt.Errorf("claim tasks: worker state: %w", err)
	}
	var state string
	found := rows.Next()
	if found {
		err = rows.Scan(&state)
	}
	rows.Close()
	if err != nil {
		return nil, false, fmt.Errorf("claim tasks: worker state: %w", err)
	}
	if !found || (state != string(core.WorkerBooting) && state != string(core.WorkerReady)) {
		return []*core.Task{}, false, nil
	}
	now := micros(params.Now)
	lease := micros(params.Now.Add(params.LeaseDuration))
	var out []*core.Task
	if params.OwnerLimit == 0 {
		out, err = collectTasks(s.queryNamed(ctx, tx, "claim",
			params.WorkerID.String(), lease, now, now, params.Pool, now, params.Max))
	} else {
		out, err = s.claimOwnerLimited(ctx, tx, params, now, lease)
	}
	if err != nil {
		return nil, false, fmt.Errorf("claim tasks: %w", err)
	}
	if out == nil {
		out = []*core.Task{}
	}
	sortClaimOrder(out)
	return out, true, nil
}

// claimOwnerLimited picks tasks in claim order while keeping every owner's
// running count (all pools, plus this claim) at or below the limit. The
// single-writer transaction makes the count exact.
func (s *Store) claimOwnerLimited(ctx context.Context, tx *sql.Tx, params *store.TaskClaimParams, now, lease int64) ([]*core.Task, error) {
	running := map[string]int{}
	rows, err := tx.QueryContext(ctx, `SELECT owner, count(*) FROM tasks WHERE state = 'running' GROUP BY owner`)
	if err != nil {
		return nil, fmt.Errorf("running per owner: %w", err)
	}
	for rows.Next() {
		var o string
		var n int
		if err := rows.Scan(&o, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("running per owner: %w", err)
		}
		running[o] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("running per owner: %w", err)
	}
	var blocked []any
	for o, n := range running {
		if n >= params.OwnerLimit {
			blocked = append(blocked, o)
		}
	}
	q := `SELECT id, owner FROM tasks WHERE state = 'queued' AND pool = ? AND run_after <= ? AND deps_pending = 0`
	if len(blocked) > 0 {
		q += ` AND owner NOT IN (` + placeholders(len(blocked)) + `)`
	}
	q += ` ORDER BY priority DESC, created_at, id LIMIT ? OFFSET ?`
	page := max(4*params.Max, 256)
	var picked []any
	for offset := 0; len(picked) < params.Max; offset += page {
		args := append(append([]any{params.Pool, now}, blocked...), page, offset)
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("candidates: %w", err)
		}
		n := 0
		for rows.Next() {
			n++
			var id, owner string
			if err := rows.Scan(&id, &owner); err != nil {
				rows.Close()
				return nil, fmt.Errorf("candidates: %w", err)
			}
			if len(picked) < params.Max && running[owner] < params.OwnerLimit {
				running[owner]++
				picked = append(picked, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("candidates: %w", err)
		}
		if n < page {
			break
		}
	}
	if len(picked) == 0 {
		return []*core.Task{}, nil
	}
	args := append([]any{params.WorkerID.String(), lease, now, now}, picked...)
	return collectTasks(tx.QueryContext(ctx, `UPDATE tasks SET state = 'running', attempt = attempt + 1, worker_id = ?,
		lease_token = `+newTokenSQL+`, lease_expires_at = ?, started_at = ?, updated_at = ?, progress = NULL, progress_msg = ''
		WHERE state = 'queued' AND id IN (`+placeholders(len(picked))+`) RETURNING `+taskCols, args...))
}

func sortClaimOrder(ts []*core.Task) {
	sort.Slice(ts, func(i, j int) bool {
		a, b := ts[i], ts[j]
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.Before(b.CreatedAt)
		}
		return bytes.Compare(a.ID[:], b.ID[:]) < 0
	})
}
