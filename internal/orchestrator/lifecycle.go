package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// update applies a guarded state change to w and keeps the local copy in
// step. It returns false (and logs) when the row moved meanwhile.
func (o *Orchestrator) update(ctx context.Context, t *tick, w *core.Worker, p *store.WorkerUpdateParams) (bool, error) {
	p.Now, p.ID = t.now, w.ID
	if len(p.FromStates) == 0 {
		p.FromStates = []core.WorkerState{w.State}
	}
	nw, err := o.st.WorkerUpdate(ctx, p)
	if errors.Is(err, core.ErrConflict) || errors.Is(err, core.ErrNotFound) {
		o.log.Info("worker changed under the tick; skipped", "worker", w.ID, "state", w.State)
		// Someone else wrote the row: the copy no longer matches it.
		o.fleet.invalidate()
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("update worker %s: %w", w.ID, err)
	}
	running := w.Running
	*w = *nw
	w.Running = running
	t.changed = true
	return true, nil
}

func ptr[T any](v T) *T { return &v }

// setState moves w to state with an event.
func (o *Orchestrator) setState(ctx context.Context, t *tick, w *core.Worker, to core.WorkerState, reason string, extra func(*store.WorkerUpdateParams)) (bool, error) {
	from := w.State
	p := &store.WorkerUpdateParams{State: ptr(to)}
	if extra != nil {
		extra(p)
	}
	ok, err := o.update(ctx, t, w, p)
	if ok {
		t.event(core.EventWorkerState, w.Pool, w.ID.String(), fmt.Sprintf("worker %s: %s → %s: %s", w.ID, from, to, reason),
			map[string]any{"from": from, "to": to, "instance": w.InstanceID, "placement": w.Placement})
	}
	return ok, err
}

// fail moves w to failed with class, requeues its leases this tick and
// feeds the breaker.
func (o *Orchestrator) fail(ctx context.Context, t *tick, w *core.Worker, class core.FailureClass, reason string) error {
	from := w.State
	heldTasks := w.Running > 0
	ok, err := o.update(ctx, t, w, &store.WorkerUpdateParams{State: ptr(core.WorkerFailed), Failure: ptr(class), Reason: ptr(reason)})
	if err != nil || !ok {
		return err
	}
	age := t.now.Sub(w.CreatedAt)
	t.rep.Failed[w.ID] = class
	t.requeue[w.ID] = true
	t.event(core.EventWorkerFailed, w.Pool, w.ID.String(), fmt.Sprintf("worker %s failed (%s) after %s in %s: %s", w.ID, class, age.Round(time.Second), from, reason),
		map[string]any{"class": class, "from": from, "age_s": int(age.Seconds()), "placement": w.Placement, "reason": reason, "held_tasks": heldTasks})
	o.m.failures.WithLabelValues(w.Pool, string(class)).Inc()
	if w.Placement == "" {
		return nil
	}
	st := t.breaker(w.Placement)
	switch {
	case breaker.TripsAtOnce(class):
		breaker.Trip(o.bcfg, st, t.now, fmt.Sprintf("%s error from the provider: %s", class, reason))
		t.dirty[st.Key] = true
		t.event(core.EventBreakerState, w.Pool, w.ID.String(), fmt.Sprintf("breaker opened at once for %s: %s (retrying cannot fix a %s error)", breaker.KeyLabel(st.Key), st.Reason, class), nil)
	case heldTasks:
		// The worker died while running a task: the task may have killed
		// it (a poison task), so it is not a start failure of the placement.
	case breaker.CountsAsStartFailure(class, w.ReadyAt, t.now, o.bcfg.StartGrace):
		tr := breaker.Record(o.bcfg, st, core.BreakerOutcome{Time: t.now, Success: false, Class: class, Worker: w.ID.String()}, t.now)
		t.dirty[st.Key] = true
		if tr != "" {
			t.event(core.EventBreakerState, w.Pool, w.ID.String(), fmt.Sprintf("breaker %s for %s: %s", tr, breaker.KeyLabel(st.Key), st.Reason), map[string]any{"transition": tr})
		}
	}
	return nil
}

func (o *Orchestrator) markReady(ctx context.Context, t *tick, w *core.Worker) error {
	ok, err := o.setState(ctx, t, w, core.WorkerReady, "first heartbeat received", func(p *store.WorkerUpdateParams) { p.ReadyAt = ptr(t.now) })
	if err != nil || !ok {
		return err
	}
	t.rep.Ready = append(t.rep.Ready, w.ID)
	if w.Placement != "" {
		st := t.breaker(w.Placement)
		tr := breaker.Record(o.bcfg, st, core.BreakerOutcome{Time: t.now, Success: true, Worker: w.ID.String()}, t.now)
		t.dirty[st.Key] = true
		if tr != "" {
			t.event(core.EventBreakerState, w.Pool, w.ID.String(), fmt.Sprintf("breaker %s for %s: canary worker %s reached ready", tr, breaker.KeyLabel(st.Key), w.ID), map[string]any{"transition": tr})
		}
	}
	return nil
}

// advance moves every live row along its lifecycle.
func (o *Orchestrator) advance(ctx context.Context, t *tick) error {
	tickD := tickOf(o.cfg)
	hbTimeout := heartbeatTimeoutOf(o.cfg)
	termStart := o.elector.Row().ElectedAt
	pools := map[string]poolSettings{}
	for _, w := range t.workers {
		ps, ok := pools[w.Pool]
		if !ok {
			ps = settingsOf(w.Pool, o.poolOrEmpty(w.Pool))
			pools[w.Pool] = ps
		}
		list, listOK := t.lists[w.Provider]
		var inst *provider.Instance
		if listOK && w.InstanceID != "" {
			inst = list[w.InstanceID]
		}
		switch w.State {
		case core.WorkerRequested:
			if t.now.Sub(w.CreatedAt) < tickD || !listOK {
				continue
			}
			if in := t.byWorker[w.Provider+"/"+w.ID.String()]; in != nil {
				if _, err := o.setState(ctx, t, w, core.WorkerProvisioning, fmt.Sprintf("adopted instance %s found at the provider after an interrupted spawn", in.ID),
					func(p *store.WorkerUpdateParams) { p.InstanceID = ptr(in.ID); p.PricePerHour = ptr(in.PricePerHour) }); err != nil {
					return err
				}
				continue
			}
			if err := o.fail(ctx, t, w, core.FailProvider, "spawn interrupted: no instance carries this worker id at the provider"); err != nil {
				return err
			}
			continue
		case core.WorkerProvisioning, core.WorkerBooting, core.WorkerReady, core.WorkerDraining:
			if listOK && w.InstanceID != "" {
				switch {
				case inst == nil:
					n := w.MissingLists + 1
					if n >= 2 {
						class, why := core.FailVanished, fmt.Sprintf("instance %s missing from %d successive provider lists", w.InstanceID, n)
						// One Get, on this failure path only, tells a
						// preemption from a disappearance.
						if p := o.providers[w.Provider]; p != nil {
							if gi, gerr := p.Get(ctx, w.InstanceID); gerr == nil && gi.Preempted {
								class, why = core.FailPreempted, fmt.Sprintf("instance %s was preempted by the provider", w.InstanceID)
							}
						}
						if err := o.fail(ctx, t, w, class, why); err != nil {
							return err
						}
						continue
					}
					if _, err := o.update(ctx, t, w, &store.WorkerUpdateParams{MissingLists: ptr(n), FromStates: []core.WorkerState{w.State}}); err != nil {
						return err
					}
				case inst.Exited:
					// The agent's container stopped on its own: fail at
					// once, no second list (it is not missing, it is dead).
					if err := o.fail(ctx, t, w, core.FailAgentExit, fmt.Sprintf("instance %s: the agent exited (%s)", w.InstanceID, exitDetail(inst))); err != nil {
						return err
					}
					continue
				case inst.Preempted:
					if err := o.fail(ctx, t, w, core.FailPreempted, fmt.Sprintf("instance %s was preempted by the provider", w.InstanceID)); err != nil {
						return err
					}
					continue
				case w.MissingLists > 0:
					if _, err := o.update(ctx, t, w, &store.WorkerUpdateParams{MissingLists: ptr(0)}); err != nil {
						return err
					}
				}
			}
		}

		switch w.State {
		case core.WorkerProvisioning:
			switch {
			case w.LastHeartbeatAt != nil:
				if ok, err := o.setState(ctx, t, w, core.WorkerBooting, "agent registered", nil); err != nil || !ok {
					if err != nil {
						return err
					}
					continue
				}
				if err := o.markReady(ctx, t, w); err != nil {
					return err
				}
			case inst != nil && inst.State == provider.InstanceRunning:
				if _, err := o.setState(ctx, t, w, core.WorkerBooting, fmt.Sprintf("instance %s is running", w.InstanceID), nil); err != nil {
					return err
				}
			case listOK && t.now.Sub(w.CreatedAt) > ps.provisionTimeout:
				// Fail closed: without a good list this tick we cannot know
				// whether the instance is running, so the timeout waits.
				if err := o.fail(ctx, t, w, core.FailProvisionTimeout, fmt.Sprintf("instance not running %s after creation (provision_timeout %s)", t.now.Sub(w.CreatedAt).Round(time.Second), ps.provisionTimeout)); err != nil {
					return err
				}
			}
		case core.WorkerBooting:
			switch {
			case w.LastHeartbeatAt != nil:
				if err := o.markReady(ctx, t, w); err != nil {
					return err
				}
			case t.now.Sub(w.CreatedAt) > ps.bootTimeout:
				if err := o.fail(ctx, t, w, core.FailBootTimeout, fmt.Sprintf("no heartbeat %s after creation (boot_timeout %s)", t.now.Sub(w.CreatedAt).Round(time.Second), ps.bootTimeout)); err != nil {
					return err
				}
			}
		case core.WorkerReady, core.WorkerDraining:
			last := heartbeatBasis(w, termStart)
			if last != nil && t.now.Sub(*last) > hbTimeout {
				if err := o.fail(ctx, t, w, core.FailHeartbeatLost, fmt.Sprintf("last heartbeat %s ago (heartbeat_timeout %s)", t.now.Sub(*last).Round(time.Second), hbTimeout)); err != nil {
					return err
				}
				continue
			}
			if w.State == core.WorkerDraining {
				switch {
				case w.Running == 0:
					if _, err := o.setState(ctx, t, w, core.WorkerTerminating, "drained: no running tasks", nil); err != nil {
						return err
					}
				case t.now.Sub(w.StateChangedAt) > ps.drainTimeout:
					if ok, err := o.setState(ctx, t, w, core.WorkerTerminating, fmt.Sprintf("drain_timeout %s passed with %d tasks still running; they are requeued", ps.drainTimeout, w.Running), nil); err != nil {
						return err
					} else if ok {
						t.requeue[w.ID] = true
					}
				}
			}
		}
	}

	// failed → terminating, terminating → terminated.
	for _, w := range t.workers {
		if w.State == core.WorkerFailed {
			if w.Running > 0 {
				t.requeue[w.ID] = true
			}
			if _, err := o.setState(ctx, t, w, core.WorkerTerminating, "terminating failed worker", nil); err != nil {
				return err
			}
		}
		if w.State != core.WorkerTerminating {
			continue
		}
		if w.Running > 0 {
			t.requeue[w.ID] = true
		}
		if err := o.terminate(ctx, t, w); err != nil {
			return err
		}
	}
	return nil
}

// heartbeatBasis is the time a ready or draining worker's heartbeat age is
// measured from: its last recorded heartbeat (its ready time before the
// first), but never earlier than the start of this leader's term. A new
// leader gives every worker a full heartbeat_timeout from its takeover:
// heartbeats sent while no replica led, or recorded through the replica
// that just died, must not count against the agents.
func heartbeatBasis(w *core.Worker, termStart time.Time) *time.Time {
	last := w.LastHeartbeatAt
	if last == nil {
		last = w.ReadyAt
	}
	if last != nil && !termStart.IsZero() && last.Before(termStart) {
		return &termStart
	}
	return last
}

func (o *Orchestrator) poolOrEmpty(name string) *config.PoolConfig {
	if pc := o.cfg.Pools[name]; pc != nil {
		return pc
	}
	return &config.PoolConfig{}
}

// terminate drives a terminating row toward terminated: delete the instance
// until the provider says it is gone.
func (o *Orchestrator) terminate(ctx context.Context, t *tick, w *core.Worker) error {
	gone := func(why string) error {
		ok, err := o.setState(ctx, t, w, core.WorkerTerminated, why, func(p *store.WorkerUpdateParams) { p.TerminatedAt = ptr(t.now) })
		if ok {
			t.rep.Terminated = append(t.rep.Terminated, w.ID)
		}
		return err
	}
	if w.InstanceID == "" {
		return gone("no instance was created")
	}
	if list, ok := t.lists[w.Provider]; ok && w.DeleteAttempts > 0 && list[w.InstanceID] == nil {
		return gone(fmt.Sprintf("instance %s no longer listed by the provider", w.InstanceID))
	}
	p, ok := o.providers[w.Provider]
	if !ok {
		t.event(core.EventProviderError, w.Pool, w.ID.String(), fmt.Sprintf("cannot delete instance %s: provider %q is not configured", w.InstanceID, w.Provider), nil)
		return nil
	}
	err := p.Delete(ctx, w.InstanceID)
	if errors.Is(err, provider.ErrNotFound) {
		return gone(fmt.Sprintf("instance %s is gone at the provider", w.InstanceID))
	}
	attempts := w.DeleteAttempts + 1
	if _, uerr := o.update(ctx, t, w, &store.WorkerUpdateParams{DeleteAttempts: ptr(attempts)}); uerr != nil {
		return uerr
	}
	if err != nil {
		t.event(core.EventProviderError, w.Pool, w.ID.String(), fmt.Sprintf("delete instance %s failed (attempt %d, will retry): %v", w.InstanceID, attempts, err), nil)
	}
	return nil
}

// requeueLost requeues, in one query, every lease held by a worker that
// failed or is being terminated this tick.
func (o *Orchestrator) requeueLost(ctx context.Context, t *tick) error {
	if len(t.requeue) == 0 {
		return nil
	}
	ids := slices.SortedFunc(maps.Keys(t.requeue), func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	tasks, err := queue.RequeueLost(ctx, o.st, t.now, ids, time.Time{})
	if err != nil {
		return fmt.Errorf("tick: requeue leases of failed workers: %w", err)
	}
	t.rep.Requeued += len(tasks)
	for _, tk := range tasks {
		if tk.State == core.TaskFailed {
			t.events = append(t.events, &core.Event{Time: t.now, Kind: core.EventTaskFailed, Pool: tk.Pool, TaskID: tk.ID.String(), Message: fmt.Sprintf("task %s failed: %s", tk.ID, tk.Error)})
		} else {
			t.events = append(t.events, &core.Event{Time: t.now, Kind: core.EventTaskRequeued, Pool: tk.Pool, TaskID: tk.ID.String(), Message: fmt.Sprintf("task %s requeued: its worker was lost (%d/%d losses)", tk.ID, tk.Lost, tk.MaxLost)})
		}
	}
	if len(tasks) > 0 {
		t.changed = true
		if o.q != nil {
			// Requeued tasks are claimable now: wake long-poll claimers.
			o.q.Signal()
		}
	}
	return nil
}
