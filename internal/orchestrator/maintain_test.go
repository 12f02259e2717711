package orchestrator

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/droverhq/drover/internal/store/storetest"
)

// The maintenance services run only while this replica leads: started
// when leadership is won, stopped (a pass in progress included) when it
// is lost, after which a deposed replica's maintenance writes nothing
// (the fence); won back, they start again under the new term.
func TestMaintenanceFollowsLeadership(t *testing.T) {
	run := func(t *testing.T, st store.Store) {
		ctx := t.Context()
		clock := core.NewFakeClock(t0)
		cfg := testConfig()
		q := queue.New(st, clock, queue.Config{LeaseDuration: 25 * time.Second}, nil)
		ecfg := ElectorConfig{ID: "old", TTL: 15 * time.Second, Interval: 5 * time.Second}
		oldEl := NewElector(st, clock, ecfg, nil)
		passes := make(chan string, 100)
		o, err := New(Deps{Store: st, Queue: q, Providers: map[string]provider.Provider{"sim": sim.New(clock, sim.Options{})},
			Clock: clock, Config: cfg, Elector: oldEl, OnMaintenancePass: func(name string, _ error) { passes <- name }})
		if err != nil {
			t.Fatal(err)
		}
		awaitAll := func(what string) {
			t.Helper()
			for range o.Maintenance().Services() {
				select {
				case <-passes:
				case <-ctx.Done():
					t.Fatalf("%s: the services never passed", what)
				}
			}
		}
		if ok, err := oldEl.Attempt(ctx); err != nil || !ok {
			t.Fatalf("old elected = %v, %v", ok, err)
		}
		o.leadershipChanged(ctx, true)
		awaitAll("leadership won")
		for _, s := range o.Maintenance().Services() {
			if isDone(s.Stopped()) {
				t.Fatalf("service %s not running while leading", s.Name())
			}
		}

		w := storetest.InsertWorker(t, st, "default", core.WorkerReady)
		if _, err := q.Submit(ctx, []queue.SubmitRequest{{Type: "render", Pool: "default"}}); err != nil {
			t.Fatal(err)
		}
		claimed, err := q.Claim(ctx, w.ID, 1)
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim: %v %v", claimed, err)
		}
		task := claimed[0].ID

		// Another replica takes over; this one learns it lost.
		clock.Advance(16 * time.Second)
		if ok, err := NewElector(st, clock, ElectorConfig{ID: "new", TTL: 15 * time.Second}, nil).Attempt(ctx); err != nil || !ok {
			t.Fatalf("new elected = %v, %v", ok, err)
		}
		o.leadershipChanged(ctx, false)
		for _, s := range o.Maintenance().Services() {
			if !isDone(s.Stopped()) {
				t.Fatalf("service %s still runs after leadership was lost", s.Name())
			}
		}
		// The lease is long expired, past its grace: a deposed replica's
		// maintenance, even run by hand, writes nothing.
		clock.Advance(time.Minute)
		o.Maintenance().Kick()
		if err := o.MaintainDue(ctx); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("maintenance of the deposed replica: err = %v, want store.ErrFenced", err)
		}
		if tk, err := st.TaskGet(ctx, task); err != nil || tk.State != core.TaskRunning {
			t.Fatalf("task after the deposed replica's maintenance: %v %v, want running", tk.State, err)
		}
		if o.elector.IsLeader() {
			t.Fatal("fenced maintenance did not depose the replica")
		}

		// Won back (the other replica's lease ran out): the services start
		// again and requeue the expired lease under the new term.
		clock.Advance(time.Minute)
		if ok, err := oldEl.Attempt(ctx); err != nil || !ok {
			t.Fatalf("old re-elected = %v, %v", ok, err)
		}
		for len(passes) > 0 {
			<-passes
		}
		o.leadershipChanged(ctx, true)
		awaitAll("leadership won back")
		if tk, err := st.TaskGet(ctx, task); err != nil || tk.State != core.TaskQueued || tk.Lost != 1 {
			t.Fatalf("task after the restarted maintenance: %+v %v, want queued, lost 1", tk, err)
		}
		o.leadershipChanged(ctx, false)
	}
	t.Run("SQLite", func(t *testing.T) {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "drover.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		if _, err := st.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		run(t, st)
	})
	t.Run("PostgreSQL", func(t *testing.T) { run(t, pgtest.Open(t, 0)) })
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
