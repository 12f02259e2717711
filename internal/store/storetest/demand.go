package storetest

import (
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// testTaskDemandCap checks TaskDemandParams.Cap: queued-side counts are
// exact below the cap and equal to it above, running is always exact, and
// an owner's free slots are consumed across pools exactly as without a
// cap (a capped count must not leave slots for a later pool).
func testTaskDemandCap(t *testing.T, s store.Store) {
	now := At(time.Hour)
	later := func(task *core.Task) { task.RunAfter = At(2 * time.Hour) }
	// pool a: owner x 6 ready + 3 not yet runnable, owner y 1 ready;
	// pool b: owner x 5 ready; pool c: owner z 4 ready, 2 of them claimed.
	InsertN(t, s, 6, Owner("x"), Pool("a"))
	InsertN(t, s, 3, Owner("x"), Pool("a"), later)
	InsertN(t, s, 1, Owner("y"), Pool("a"))
	InsertN(t, s, 5, Owner("x"), Pool("b"))
	InsertN(t, s, 4, Owner("z"), Pool("c"))
	w := InsertWorker(t, s, "c", core.WorkerReady)
	eq(t, "claimed in c", len(Claim(t, s, w, now, 2, 0)), 2)

	demand := func(ownerLimit, capAt int) map[string]store.PoolDemand {
		t.Helper()
		d, err := s.TaskDemand(t.Context(), &store.TaskDemandParams{Now: now, OwnerLimit: ownerLimit, Cap: capAt})
		noErr(t, "TaskDemand", err)
		return d
	}

	// No owner limit.
	for _, capAt := range []int{0, 10, 100} {
		d := demand(0, capAt)
		eq(t, "a exact", d["a"], store.PoolDemand{Queued: 10, Claimable: 7})
		eq(t, "b exact", d["b"], store.PoolDemand{Queued: 5, Claimable: 5})
		eq(t, "c exact", d["c"], store.PoolDemand{Queued: 2, Claimable: 2, Running: 2})
	}
	d := demand(0, 3)
	eq(t, "a capped", d["a"], store.PoolDemand{Queued: 3, Claimable: 3})
	eq(t, "b capped", d["b"], store.PoolDemand{Queued: 3, Claimable: 3})
	eq(t, "c below cap", d["c"], store.PoolDemand{Queued: 2, Claimable: 2, Running: 2})
	d = demand(0, 1)
	eq(t, "c: running is never capped", d["c"], store.PoolDemand{Queued: 1, Claimable: 1, Running: 2})

	// Owner limit 4: x takes 4 slots in a (2 blocked), none are left for b.
	for _, capAt := range []int{0, 100} {
		d := demand(4, capAt)
		eq(t, "a limited", d["a"], store.PoolDemand{Queued: 10, Claimable: 5, OwnerBlocked: 2})
		eq(t, "b limited", d["b"], store.PoolDemand{Queued: 5, Claimable: 0, OwnerBlocked: 5})
		eq(t, "c limited", d["c"], store.PoolDemand{Queued: 2, Claimable: 2, Running: 2})
	}
	d = demand(4, 3)
	eq(t, "a limited, capped", d["a"], store.PoolDemand{Queued: 3, Claimable: 3, OwnerBlocked: 2})
	eq(t, "b limited, capped", d["b"], store.PoolDemand{Queued: 3, Claimable: 0, OwnerBlocked: 3})
	eq(t, "c limited, capped", d["c"], store.PoolDemand{Queued: 2, Claimable: 2, Running: 2})
	eq(t, "pools", len(d), 3)
}

// testWorkerListBrief checks that a Brief WorkerList returns the same
// workers, in the same order, with the fields the control loop reads.
func testWorkerListBrief(t *testing.T, s store.Store) {
	w1 := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertWorker(t, s, "other", core.WorkerBooting)
	InsertN(t, s, 2)
	eq(t, "claimed", len(Claim(t, s, w1, At(time.Hour), 2, 0)), 2)

	full, err := s.WorkerList(t.Context(), &store.WorkerListParams{LiveOnly: true})
	noErr(t, "WorkerList", err)
	brief, err := s.WorkerList(t.Context(), &store.WorkerListParams{LiveOnly: true, Brief: true})
	noErr(t, "WorkerList brief", err)
	eq(t, "count", len(brief), len(full))
	eq(t, "count", len(brief), 2)
	for i := range full {
		f, b := full[i], brief[i]
		eq(t, "id", b.ID, f.ID)
		eq(t, "pool", b.Pool, f.Pool)
		eq(t, "provider", b.Provider, f.Provider)
		eq(t, "placement", b.Placement, f.Placement)
		eq(t, "instance", b.InstanceID, f.InstanceID)
		eq(t, "state", b.State, f.State)
		eq(t, "running", b.Running, f.Running)
		eq(t, "concurrency", b.Concurrency, f.Concurrency)
		eq(t, "created", b.CreatedAt, f.CreatedAt)
		eq(t, "state changed", b.StateChangedAt, f.StateChangedAt)
	}
	eq(t, "running of the claiming worker", brief[0].Running+brief[1].Running, 2)
}
