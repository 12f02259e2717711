package orchestrator

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// place spawns up to n workers on the pool's candidates, in order, skipping
// placements whose breaker refuses and moving to the next candidate on a
// capacity (or quota) error. It returns how many were created and the
// reasons the rest were not.
func (o *Orchestrator) place(ctx context.Context, t *tick, ps poolSettings, n int) (int, []string, error) {
	placements := o.orderedPlacements(ctx, ps)
	p := o.providers[ps.cfg.Provider]
	if len(placements) == 0 {
		placements = []provider.Placement{{}}
	}
	exhausted := map[int]bool{}
	var capacityTried []string // candidates that refused for capacity this tick
	var reasons []string
	addReason := func(r string) {
		if !slices.Contains(reasons, r) {
			reasons = append(reasons, r)
		}
	}
	spawned := 0
	for spawned < n {
		created := false
		stop := false
		var refusals []string
		for i, pl := range placements {
			if exhausted[i] {
				continue
			}
			key := pl.Key(ps.name)
			st := t.breaker(key)
			before := st.Status
			v := breaker.Allow(o.bcfg, st, t.now)
			if st.Status != before {
				t.dirty[key] = true
				t.event(core.EventBreakerState, ps.name, "", fmt.Sprintf("breaker open→half-open for %s: cooldown over", breaker.KeyLabel(key)), map[string]any{"transition": "open→half-open"})
			}
			if !v.Allowed {
				refusals = append(refusals, v.Reason)
				continue
			}
			w, err := o.spawn(ctx, t, ps, pl, p, v.Canary)
			if err != nil && w == nil {
				return spawned, reasons, err
			}
			if err == nil {
				created = true
				spawned++
				t.rep.Spawned = append(t.rep.Spawned, w.ID)
				break
			}
			kind := provider.KindOf(err)
			switch {
			case kind == provider.KindQuota && provider.IsAccountWide(err):
				// No other candidate can escape it: open them all, stop.
				o.openAccount(t, ps.name, ps.cfg.Provider, w.Reason)
				addReason(fmt.Sprintf("not scaling up: provider %s refused the account: %s", ps.cfg.Provider, w.Reason))
				stop = true
			case kind == provider.KindCapacity:
				exhausted[i] = true
				capacityTried = append(capacityTried, breaker.KeyLabel(key))
				continue
			case kind == provider.KindQuota || kind == provider.KindInvalid:
				exhausted[i] = true
				refusals = append(refusals, fmt.Sprintf("%s at %s: %v", kind, breaker.KeyLabel(key), err))
				continue
			default:
				addReason(fmt.Sprintf("not scaling up further this tick: provider %s: %v", ps.cfg.Provider, err))
				stop = true
			}
			break
		}
		if stop {
			break
		}
		if !created {
			for _, r := range refusals {
				addReason("not scaling up: " + r)
			}
			if len(capacityTried) > 0 {
				addReason(capacityReason(capacityTried, len(placements)))
			}
			if len(refusals) == 0 && len(capacityTried) == 0 {
				addReason("not scaling up: no candidate placement left this tick")
			}
			break
		}
	}
	if spawned < n && len(reasons) > 0 {
		for _, r := range reasons {
			t.event(core.EventScaleBlocked, ps.name, "", fmt.Sprintf("%d of %d wanted workers not spawned: %s", n-spawned, n, r), nil)
		}
	}
	return spawned, reasons, nil
}

// spawn inserts the row first (requested, with the token's hash), then asks
// the provider, then records the instance. On a provider error the row is
// failed with the error's class and the error is returned with the row.
func (o *Orchestrator) spawn(ctx context.Context, t *tick, ps poolSettings, pl provider.Placement, p provider.Provider, canary bool) (*core.Worker, error) {
	token, err := newToken()
	if err != nil {
		return nil, fmt.Errorf("spawn: make worker token: %w", err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("spawn: new worker id: %w", err)
	}
	sum := sha256.Sum256([]byte(token))
	w := &core.Worker{
		ID: id, Pool: ps.name, Provider: ps.cfg.Provider, Placement: pl.Key(ps.name), GPUType: pl.GPU, Region: pl.Region,
		State: core.WorkerRequested, TokenHash: hex.EncodeToString(sum[:]), Concurrency: ps.concurrency,
		CreatedAt: t.now, StateChangedAt: t.now,
	}
	if err := o.st.WorkerInsert(ctx, w); err != nil {
		return nil, fmt.Errorf("spawn: insert worker row: %w", err)
	}
	o.fleet.add(w)
	t.changed = true
	if canary {
		st := t.breaker(w.Placement)
		breaker.MarkCanary(st, w.ID.String(), t.now)
		t.dirty[st.Key] = true
	}
	env := make(map[string]string, len(ps.cfg.Env)+3)
	maps.Copy(env, ps.cfg.Env)
	env["DROVER_SERVER"] = o.cfg.PublicURL
	env["DROVER_WORKER_ID"] = id.String()
	env["DROVER_TOKEN"] = token
	inst, cerr := p.Create(ctx, &provider.CreateRequest{WorkerID: id.String(), Pool: ps.name, Placement: pl, Image: ps.cfg.Image, Env: env})
	if cerr != nil && provider.MaybeCreated(cerr) {
		// The instance may exist: the row stays requested, counted as
		// supply, and the next good List adopts the instance carrying its
		// worker id or fails the row (advance). Failing it now would
		// leave that instance an orphan and spawn a second one.
		t.event(core.EventProviderError, ps.name, id.String(),
			fmt.Sprintf("create of worker %s on %s: %s; the next good provider list adopts its instance or fails the worker",
				id, breaker.KeyLabel(w.Placement), redact(cerr.Error(), token)), map[string]any{"placement": w.Placement})
		return w, nil
	}
	if cerr != nil {
		class := classOf(cerr)
		if err := o.fail(ctx, t, w, class, redact(cerr.Error(), token)); err != nil {
			return nil, err
		}
		// The failure is recorded (event, breaker) now; move the row on in
		// this same tick so that the next tick does not see a failed row it
		// did not record and count it a second time. An instance a
		// half-failed create may have left is found by List as an orphan.
		if _, err := o.setState(ctx, t, w, core.WorkerTerminating, "create failed", nil); err != nil {
			return nil, err
		}
		return w, cerr
	}
	if _, err := o.setState(ctx, t, w, core.WorkerProvisioning, fmt.Sprintf("created instance %s at %s", inst.ID, breaker.KeyLabel(w.Placement)),
		func(up *store.WorkerUpdateParams) {
			up.InstanceID = ptr(inst.ID)
			up.PricePerHour = ptr(inst.PricePerHour)
		}); err != nil {
		return nil, err
	}
	what := "spawned"
	if canary {
		what = "spawned canary"
	}
	t.event(core.EventWorkerSpawn, ps.name, id.String(), fmt.Sprintf("%s worker %s on %s (instance %s)", what, id, breaker.KeyLabel(w.Placement), inst.ID),
		map[string]any{"placement": w.Placement, "instance": inst.ID, "canary": canary})
	o.m.spawns.WithLabelValues(ps.name).Inc()
	return w, nil
}

func classOf(err error) core.FailureClass {
	switch provider.KindOf(err) {
	case provider.KindCapacity:
		return core.FailCapacity
	case provider.KindQuota:
		return core.FailQuota
	case provider.KindInvalid:
		return core.FailInvalidRequest
	}
	return core.FailProvider
}

func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
