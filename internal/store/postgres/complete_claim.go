package postgres

import (
	"context"
	"fmt"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/jackc/pgx/v5"
)

// TaskCompleteClaim runs the completions and then the claims in one
// transaction; see store.Store. The completion is TaskComplete's statement
// and the claims TaskClaim's, so the claims see the completions' effects
// (a released dependent) and the transaction commits once.
func (s *Store) TaskCompleteClaim(ctx context.Context, complete []*store.TaskCompleteParams, claims []*store.TaskClaimParams) ([][]core.Lease, [][]*core.Task, error) {
	if err := checkClaims(claims); err != nil {
		return nil, nil, err
	}
	n := 0
	for _, p := range complete {
		n += len(p.Items)
	}
	if n == 0 {
		lost := make([][]core.Lease, len(complete))
		for i := range lost {
			lost[i] = []core.Lease{}
		}
		tasks, err := s.TaskClaim(ctx, claims)
		if err != nil {
			return nil, nil, err
		}
		return lost, tasks, nil
	}
	var lost [][]core.Lease
	out := make([][]*core.Task, len(claims))
	plan := planClaims(claims)
	err := retryDeadlock(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			clear(out)
			var err error
			if n == 1 {
				lost, err = completeOne(ctx, tx, complete)
			} else {
				lost, err = completeItems(ctx, tx, complete)
			}
			if err != nil {
				return fmt.Errorf("complete %d tasks: %w", n, err)
			}
			if len(claims) == 0 {
				return nil
			}
			return s.claimInTx(ctx, tx, claims, plan, out)
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("complete tasks of %d workers and claim for %d: %w", len(complete), len(claims), err)
	}
	sortClaims(out)
	return lost, out, nil
}
