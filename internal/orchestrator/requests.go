package orchestrator

import (
	"context"
	"fmt"
	"slices"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// The orchestrator is the only writer of worker state. Other components
// record a store.WorkerRequest (the API for operator drain and terminate,
// the queue for facts an agent reports at registration, such as a pool
// that requires GPUs and an agent that found none) and wake the loop; the
// next tick applies each request here, with its event, and deletes it.

// Operator actions and reported failures apply to these states; a request
// for a worker in any other state is dropped with an event.
var (
	drainFrom     = []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting, core.WorkerReady}
	terminateFrom = []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting, core.WorkerReady, core.WorkerDraining, core.WorkerFailed}
	failFrom      = []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting, core.WorkerReady}
)

// requestAllowed reports whether a request with action may apply to a
// worker in state now (the API answers 409 otherwise).
func requestAllowed(action store.WorkerAction, state core.WorkerState) bool {
	switch action {
	case store.WorkerActionDrain:
		return slices.Contains(drainFrom, state)
	case store.WorkerActionTerminate:
		return slices.Contains(terminateFrom, state)
	case store.WorkerActionFail:
		return slices.Contains(failFrom, state)
	}
	return false
}

// applyRequests applies the pending worker requests read this tick.
func (o *Orchestrator) applyRequests(ctx context.Context, t *tick, reqs []*store.WorkerRequest) error {
	if len(reqs) == 0 {
		return nil
	}
	for _, r := range reqs {
		w, ok := t.byID[r.WorkerID]
		if !ok || !requestAllowed(r.Action, w.State) {
			state := "gone"
			if ok {
				state = string(w.State)
			}
			pool := ""
			if ok {
				pool = w.Pool
			}
			t.event(core.EventWorkerState, pool, r.WorkerID.String(),
				fmt.Sprintf("worker %s: %s request by %s ignored: the worker is %s", r.WorkerID, r.Action, r.RequestedBy, state), nil)
			continue
		}
		var err error
		// The worker row keeps the operator's reason, as the API documents.
		withReason := func(p *store.WorkerUpdateParams) { p.Reason = &r.Reason }
		switch r.Action {
		case store.WorkerActionDrain:
			_, err = o.setState(ctx, t, w, core.WorkerDraining, r.Reason, withReason)
		case store.WorkerActionTerminate:
			_, err = o.setState(ctx, t, w, core.WorkerTerminating, r.Reason, withReason)
		case store.WorkerActionFail:
			err = o.fail(ctx, t, w, r.Failure, r.Reason)
		}
		if err != nil {
			return fmt.Errorf("apply %s request for worker %s: %w", r.Action, r.WorkerID, err)
		}
	}
	if err := o.st.WorkerRequestDelete(ctx, reqs); err != nil {
		return fmt.Errorf("delete applied worker requests: %w", err)
	}
	t.changed = true
	return nil
}
