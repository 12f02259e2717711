package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
)

// observe reads everything the tick needs in a constant number of queries.
func (o *Orchestrator) observe(ctx context.Context, t *tick) error {
	// The database reads and the provider lists run concurrently: a tick
	// costs the slowest of them, not their sum (a provider API call can
	// take hundreds of milliseconds).
	var bs []*core.BreakerState
	names := map[string]bool{}
	for _, pc := range o.cfg.Pools {
		names[pc.Provider] = true
	}
	type listResult struct {
		insts []*provider.Instance
		err   error
	}
	lists := map[string]*listResult{}
	for name := range names {
		if _, ok := o.providers[name]; ok {
			lists[name] = &listResult{}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	// The tick writes no task state before it reads the workers (lease
	// expiry, timeouts and queue TTL are the leader's maintenance services,
	// package maintenance), so the workers' activity (fleet.go), demand,
	// breakers, requests and provider lists are all read at once: the tick
	// costs the slowest read.
	g.Go(func() error { return o.readFleet(gctx, t) })
	g.Go(func() error {
		var err error
		if o.q != nil {
			t.demand, err = o.q.DemandCapped(gctx, o.demandCap())
		} else {
			t.demand, err = o.st.TaskDemand(gctx, &store.TaskDemandParams{Now: t.now, OwnerLimit: o.cfg.Tasks.OwnerLimit, Cap: o.demandCap()})
		}
		if err != nil {
			return fmt.Errorf("tick: read demand: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		var err error
		if bs, err = o.st.BreakerGetAll(gctx); err != nil {
			return fmt.Errorf("tick: load breakers: %w", err)
		}
		if t.requests, err = o.st.WorkerRequestList(gctx); err != nil {
			return fmt.Errorf("tick: read worker requests: %w", err)
		}
		return nil
	})
	for name, res := range lists {
		p := o.providers[name]
		g.Go(func() error {
			res.insts, res.err = p.List(gctx)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	for _, w := range t.workers {
		t.byID[w.ID] = w
		if w.Provider != "" {
			names[w.Provider] = true
		}
	}
	t.breakers = make(map[string]*core.BreakerState, len(bs))
	for _, b := range bs {
		t.breakers[b.Key] = b
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		res, ok := lists[name]
		if p, configured := o.providers[name]; !ok && configured {
			// A provider no pool uses any more still has workers.
			res, ok = &listResult{}, true
			res.insts, res.err = p.List(ctx)
		}
		if !ok {
			t.rep.ListErrors[name] = "provider not configured"
			continue
		}
		if res.err != nil {
			t.rep.ListErrors[name] = res.err.Error()
			t.event(core.EventProviderError, "", "", fmt.Sprintf("provider %s: list failed, skipping orphan and vanished checks this tick: %v", name, res.err), nil)
			continue
		}
		m := make(map[string]*provider.Instance, len(res.insts))
		for _, in := range res.insts {
			// A gone instance is dropped, except one whose agent exited:
			// it is still there (and may still bill) until deleted, and
			// advance and reconcileOrphans read Exited from it.
			if in.State == provider.InstanceGone && !in.Exited {
				continue
			}
			m[in.ID] = in
			if in.WorkerID != "" {
				t.byWorker[name+"/"+in.WorkerID] = in
			}
		}
		t.lists[name] = m
	}
	return nil
}

// reconcileOrphans deletes instances tagged as ours that have no live row
// (or whose row points at another instance) once they are older than the
// pool's orphan grace. Only providers whose List succeeded are considered.
func (o *Orchestrator) reconcileOrphans(ctx context.Context, t *tick) {
	seen := map[string]bool{}
	for _, pname := range slices.Sorted(maps.Keys(t.lists)) {
		// Nearly every instance is accounted for: only the rest are
		// sorted (for a deterministic order), not the whole fleet.
		var orphans []*provider.Instance
		for _, in := range t.lists[pname] {
			if in.WorkerID == "" {
				continue
			}
			if wid, err := uuid.Parse(in.WorkerID); err == nil {
				if w, ok := t.byID[wid]; ok && (w.InstanceID == "" || w.InstanceID == in.ID) {
					continue // ours and accounted for (requested rows adopt below)
				}
			}
			orphans = append(orphans, in)
		}
		slices.SortFunc(orphans, func(a, b *provider.Instance) int { return strings.Compare(a.ID, b.ID) })
		for _, in := range orphans {
			key := pname + "/" + in.ID
			seen[key] = true
			first, ok := o.orphanSeen[key]
			if !ok {
				first = t.now
				o.orphanSeen[key] = first
			}
			grace := config.DefaultOrphanGrace
			if pc := o.cfg.Pools[in.Pool]; pc != nil {
				grace = settingsOf(in.Pool, pc).orphanGrace
			}
			// The grace covers a spawn still recording its row; an
			// instance whose agent exited can be no such spawn, does no
			// work and may still bill (a stopped pod's disk): delete it
			// now.
			if t.now.Sub(first) < grace && !in.Exited {
				continue
			}
			err := o.providers[pname].Delete(ctx, in.ID)
			if err != nil && !errors.Is(err, provider.ErrNotFound) {
				t.event(core.EventProviderError, in.Pool, in.WorkerID, fmt.Sprintf("delete orphan instance %s at %s failed (will retry): %v", in.ID, pname, err), nil)
				continue
			}
			delete(o.orphanSeen, key)
			t.rep.OrphansDeleted = append(t.rep.OrphansDeleted, in.ID)
			if in.Exited {
				t.event(core.EventWorkerOrphan, in.Pool, in.WorkerID,
					fmt.Sprintf("deleted exited orphan instance %s at %s (%s): tagged with worker %s that has no live row; an exited instance is deleted at once",
						in.ID, pname, exitDetail(in), in.WorkerID), nil)
				continue
			}
			t.event(core.EventWorkerOrphan, in.Pool, in.WorkerID,
				fmt.Sprintf("terminated orphan instance %s at %s: tagged with worker %s that has no live row, seen for %s (orphan_grace %s)",
					in.ID, pname, in.WorkerID, t.now.Sub(first).Round(time.Second), grace), nil)
		}
	}
	for key := range o.orphanSeen {
		pname, _, _ := strings.Cut(key, "/")
		if _, good := t.lists[pname]; good && !seen[key] {
			delete(o.orphanSeen, key)
		}
	}
}
