package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/google/uuid"
)

// CarryAPI is the optional part of the worker API that reports finished
// tasks on the agent's next claim (one request per task in steady state).
// *client.Client implements it; an API without it completes every task
// with its own request.
type CarryAPI interface {
	ClaimComplete(ctx context.Context, id uuid.UUID, max int, wait time.Duration, items []wire.CompleteItem) ([]wire.ClaimedTask, []wire.Lease, error)
}

var _ CarryAPI = (*client.Client)(nil)

// errNotCarried tells a finished task that its completion did not go out
// on a claim (the claim failed, the agent is stopping, the server is too
// old): it reports on its own, as it would have without carrying.
var errNotCarried = errors.New("completion not carried by a claim")

// errCarryUnknown is errNotCarried for a claim that failed after it may
// have reached the server (network error, 5xx, a drain cutting its long
// poll): the completion may have landed, so its own request may hear 409.
var errCarryUnknown = fmt.Errorf("%w: the claim carrying it failed, outcome unknown", errNotCarried)

// carriedCompletion is a finished task's completion waiting for the claim
// loop's next claim; done receives its outcome (buffered 1).
type carriedCompletion struct {
	item wire.CompleteItem
	done chan error
}

// carrier returns the API's CarryAPI, if it has one.
func carrier(api API) CarryAPI {
	if c, ok := api.(CarryAPI); ok {
		return c
	}
	return nil
}

// handOver gives a successful completion without outputs to the claim
// loop, if it is idle (every slot busy, waiting for one to free): the
// completion then rides on the claim that refills this task's slot. It
// returns nil when the task must report on its own: the loop is in a
// claim already (a long poll would hold the completion back), the agent
// drains or stops, or carrying is off.
func (a *Agent) handOver(lease wire.Lease, result []byte) chan error {
	a.mu.Lock()
	if a.carrier == nil || a.noCarry || !a.claimIdle || a.draining || a.stopped {
		a.mu.Unlock()
		return nil
	}
	c := &carriedCompletion{
		item: wire.CompleteItem{TaskID: lease.TaskID, LeaseToken: lease.Token, Result: result},
		done: make(chan error, 1),
	}
	a.carry = append(a.carry, c)
	a.mu.Unlock()
	select {
	case a.slotFree <- struct{}{}:
	default:
	}
	return c.done
}

// takeCarried returns the completions handed over since the last claim.
// Called with a.mu held.
func (a *Agent) takeCarried() []*carriedCompletion {
	c := a.carry
	a.carry = nil
	return c
}

// claim claims up to max tasks, carrying the completions handed over. On
// success each carried completion hears its outcome (nil, or a lease-lost
// error); on failure each hears errNotCarried and reports on its own. A
// server that does not know the field turns carrying off for good and the
// claim is repeated without it.
func (a *Agent) claim(ctx context.Context, max int, wait time.Duration, carry []*carriedCompletion) ([]wire.ClaimedTask, error) {
	if len(carry) == 0 {
		return a.api.Claim(ctx, a.opt.WorkerID, max, wait)
	}
	items := make([]wire.CompleteItem, len(carry))
	for i, c := range carry {
		items[i] = c.item
	}
	tasks, lost, err := a.carrier.ClaimComplete(ctx, a.opt.WorkerID, max, wait, items)
	if answered(err) {
		a.dead.alive(a.opt.Clock.Now())
	}
	if err != nil {
		switch client.StatusOf(err) {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			// Rejected whole: nothing was completed.
			settleCarried(carry, errNotCarried)
		default:
			settleCarried(carry, errCarryUnknown)
		}
		if client.IsUnknownComplete(err) {
			a.mu.Lock()
			a.noCarry = true
			a.mu.Unlock()
			a.log.Info("server does not take completions on claims; completing tasks with their own requests", "err", err)
			// The completions go on their own: their slots are not free
			// until they are reported.
			if max -= len(carry); max <= 0 {
				return nil, nil
			}
			return a.api.Claim(ctx, a.opt.WorkerID, max, wait)
		}
		return nil, err
	}
	stale := make(map[uuid.UUID]bool, len(lost))
	for _, l := range lost {
		stale[l.TaskID] = true
	}
	for _, c := range carry {
		if stale[c.item.TaskID] {
			c.done <- &client.Error{Status: http.StatusConflict, Code: wire.CodeConflict, Op: "complete task (carried by a claim)",
				Message: "the lease is stale; the completion changed nothing"}
		} else {
			c.done <- nil
		}
	}
	return tasks, nil
}

// settleCarried answers every carried completion with err.
func settleCarried(carry []*carriedCompletion, err error) {
	for _, c := range carry {
		c.done <- err
	}
}
