package store

import (
	"context"
	"time"
)

// DemandSource is the handful of indexed lookups ComputeDemand needs from a
// backend. Each runs against one consistent snapshot of the tasks table.
// A limit < 0 means "no limit"; ComputeDemand never passes 0.
type DemandSource interface {
	// RunningByPoolOwner returns the running tasks counted per pool and owner.
	RunningByPoolOwner(ctx context.Context) (map[PoolOwner]int, error)
	// NextQueuedPool returns the smallest pool name > after (any, when first)
	// that has queued tasks; ok is false when there is none.
	NextQueuedPool(ctx context.Context, after string, first bool) (pool string, ok bool, err error)
	// NextQueuedOwner is NextQueuedPool for the owners of one pool.
	NextQueuedOwner(ctx context.Context, pool, after string, first bool) (owner string, ok bool, err error)
	// CountQueued counts up to limit queued tasks of pool.
	CountQueued(ctx context.Context, pool string, limit int) (int, error)
	// CountReady counts up to limit queued tasks of pool with run_after <=
	// now and no pending dependency; of one owner when owner is non-nil.
	CountReady(ctx context.Context, pool string, owner *string, now time.Time, limit int) (int, error)
}

// PoolOwner keys counts per pool and owner.
type PoolOwner struct{ Pool, Owner string }

// ComputeDemand implements TaskDemand's semantics (see Store.TaskDemand and
// TaskDemandParams) on top of a backend's DemandSource, so that both
// backends count the same way and none scans the backlog when a Cap is
// given.
//
// An owner's free slots (OwnerLimit minus its running tasks in all pools)
// are shared across pools in pool-name order, so no slot is counted twice.
// With a Cap the work is bounded per pool by Cap plus the owners' free
// slots: without an owner limit the ready tasks of a pool are counted up
// to Cap; with one, each (pool, owner) pair is counted only up to the
// owner's remaining free slots plus what OwnerBlocked still lacks of Cap.
func ComputeDemand(ctx context.Context, src DemandSource, params *TaskDemandParams) (map[string]PoolDemand, error) {
	out := map[string]PoolDemand{}
	running, err := src.RunningByPoolOwner(ctx)
	if err != nil {
		return nil, err
	}
	ownerRunning := map[string]int{}
	for k, n := range running {
		d := out[k.Pool]
		d.Running += n
		out[k.Pool] = d
		ownerRunning[k.Owner] += n
	}
	unlimited := -1
	capAt := func(n int) int {
		if params.Cap > 0 {
			return min(n, params.Cap)
		}
		return n
	}
	// free holds each owner's slots not yet given to an earlier pool.
	free := map[string]int{}
	freeOf := func(owner string) int {
		f, ok := free[owner]
		if !ok {
			f = max(0, params.OwnerLimit-ownerRunning[owner])
		}
		return f
	}
	pool, first := "", true
	for {
		p, ok, err := src.NextQueuedPool(ctx, pool, first)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		pool, first = p, false
		d := out[pool]
		limit := unlimited
		if params.Cap > 0 {
			limit = params.Cap
		}
		if d.Queued, err = src.CountQueued(ctx, pool, limit); err != nil {
			return nil, err
		}
		if params.OwnerLimit <= 0 {
			if d.Claimable, err = src.CountReady(ctx, pool, nil, params.Now, limit); err != nil {
				return nil, err
			}
			out[pool] = d
			continue
		}
		owner, firstOwner := "", true
		for {
			o, ok, err := src.NextQueuedOwner(ctx, pool, owner, firstOwner)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			owner, firstOwner = o, false
			f := freeOf(owner)
			limit := unlimited
			if params.Cap > 0 {
				limit = f + max(0, params.Cap-d.OwnerBlocked)
				if limit == 0 {
					continue
				}
			}
			n, err := src.CountReady(ctx, pool, &owner, params.Now, limit)
			if err != nil {
				return nil, err
			}
			c := min(n, f)
			free[owner] = f - c
			d.Claimable += c
			d.OwnerBlocked += n - c
		}
		d.Claimable, d.OwnerBlocked = capAt(d.Claimable), capAt(d.OwnerBlocked)
		out[pool] = d
	}
	return out, nil
}
