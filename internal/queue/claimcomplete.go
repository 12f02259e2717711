package queue

import (
	"context"
	"fmt"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// CheckCompletions checks a worker's completions as CompleteMany does
// (at most MaxClaim items, each result a JSON object within
// core.MaxResultBytes; errors name "result", or "items[i].result" when
// there are several) and returns them with their results normalised.
func CheckCompletions(items []store.TaskCompletion) ([]store.TaskCompletion, error) {
	if len(items) > MaxClaim {
		return nil, core.Invalid("items", "has %s items; the limit is %s", commas(len(items)), commas(MaxClaim))
	}
	checked := make([]store.TaskCompletion, len(items))
	for i, it := range items {
		field := "result"
		if len(items) > 1 {
			field = fmt.Sprintf("items[%d].result", i)
		}
		res, err := checkJSONObject(field, it.Result, core.MaxResultBytes)
		if err != nil {
			return nil, err
		}
		checked[i] = store.TaskCompletion{Lease: it.Lease, Result: res}
	}
	return checked, nil
}

// claimParamsBuf holds the store parameters of one claim call. A pass over
// hundreds of parked claims would otherwise allocate them anew each time
// (tens of KB a pass); the buffers go back to Service.claimBufs once the
// store call returned (a store keeps no parameter past its call).
type claimParamsBuf struct {
	params []*store.TaskClaimParams
	vals   []store.TaskClaimParams
}

// claimParams resolves the pool of each claim's worker (from cache when
// possible) and returns the store's parameters, all at one Now, in a
// buffer to hand back with putClaimParams once the store call returned.
func (s *Service) claimParams(ctx context.Context, reqs []ClaimRequest) (*claimParamsBuf, error) {
	now := s.clock.Now()
	b, _ := s.claimBufs.Get().(*claimParamsBuf)
	if b == nil {
		b = &claimParamsBuf{}
	}
	if cap(b.vals) < len(reqs) {
		b.vals = make([]store.TaskClaimParams, len(reqs))
		b.params = make([]*store.TaskClaimParams, len(reqs))
	}
	b.vals, b.params = b.vals[:len(reqs)], b.params[:len(reqs)]
	for i, r := range reqs {
		pool, err := s.workerPool(ctx, r.WorkerID)
		if err != nil {
			s.putClaimParams(b)
			return nil, fmt.Errorf("claim tasks: %w", err)
		}
		b.vals[i] = store.TaskClaimParams{
			Now: now, WorkerID: r.WorkerID, Pool: pool, Max: r.Max,
			LeaseDuration: s.cfg.LeaseDuration, OwnerLimit: s.cfg.OwnerLimit,
		}
		b.params[i] = &b.vals[i]
	}
	return b, nil
}

// putClaimParams hands b back for later claim calls.
func (s *Service) putClaimParams(b *claimParamsBuf) {
	clear(b.params)
	s.claimBufs.Put(b)
}

// ClaimCompleteMany is ClaimMany for claims that carry their workers'
// completions (ClaimRequest.Complete, already checked by
// CheckCompletions): every carried completion, then every claim, in ONE
// store transaction (store TaskCompleteClaim), so the slots and
// dependents the completions free are claimable by these very claims and
// a claim pass commits once. lost[i] holds the stale leases of
// reqs[i].Complete (nothing changed for those; never nil). Parked claims
// are woken when a completion landed, as after CompleteMany.
func (s *Service) ClaimCompleteMany(ctx context.Context, reqs []ClaimRequest) (lost [][]core.Lease, tasks [][]*core.Task, err error) {
	for i, r := range reqs {
		if r.Max < 1 || r.Max > MaxClaim {
			return nil, nil, core.Invalid(fmt.Sprintf("claims[%d].max", i), "must be between 1 and %d", MaxClaim)
		}
	}
	buf, err := s.claimParams(ctx, reqs)
	if err != nil {
		return nil, nil, err
	}
	defer s.putClaimParams(buf)
	params := buf.params
	var (
		complete []*store.TaskCompleteParams
		of       []int // index into reqs of each complete
		items    int
	)
	for i, r := range reqs {
		if len(r.Complete) > 0 {
			complete = append(complete, &store.TaskCompleteParams{Now: params[i].Now, WorkerID: r.WorkerID, Items: r.Complete})
			of = append(of, i)
			items += len(r.Complete)
		}
	}
	got, tasks, err := s.st.TaskCompleteClaim(ctx, complete, params)
	if err != nil {
		return nil, nil, fmt.Errorf("complete %d tasks and claim for %d workers: %w", items, len(reqs), err)
	}
	if len(got) != len(complete) || len(tasks) != len(reqs) {
		return nil, nil, fmt.Errorf("complete and claim: store returned %d and %d results for %d and %d calls", len(got), len(tasks), len(complete), len(reqs))
	}
	lost = make([][]core.Lease, len(reqs))
	landed := false
	for j, i := range of {
		lost[i] = got[j]
		landed = landed || len(got[j]) < len(reqs[i].Complete)
	}
	for i := range lost {
		if lost[i] == nil {
			lost[i] = []core.Lease{}
		}
	}
	if landed {
		// As in CompleteMany: a completion can make work claimable for
		// the parked claims this call did not serve.
		s.notify()
	}
	return lost, tasks, nil
}
