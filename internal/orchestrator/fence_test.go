package orchestrator

import (
	"errors"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// A leader paused past its lease (here: its clock jumps past the TTL while
// another replica takes over) cannot spawn: the tick's worker insert is
// rejected by the term check, counted, and nothing is written.
func TestPausedLeaderCannotSpawn(t *testing.T) {
	st := pgtest.Open(t, 0)
	ctx := t.Context()
	clock := core.NewFakeClock(t0)
	cfg := testConfig()
	q := queue.New(st, clock, queue.Config{}, nil)
	prov := sim.New(clock, sim.Options{})
	ecfg := ElectorConfig{TTL: 15 * time.Second, Interval: 5 * time.Second}
	ecfg.ID = "old"
	oldEl := NewElector(st, clock, ecfg, nil)
	reg := prometheus.NewRegistry()
	o, err := New(Deps{Store: st, Queue: q, Providers: map[string]provider.Provider{"sim": prov}, Clock: clock,
		Config: cfg, Elector: oldEl, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := oldEl.Attempt(ctx); err != nil || !ok {
		t.Fatalf("old leader elected = %v, %v", ok, err)
	}
	if _, err := q.Submit(ctx, []queue.SubmitRequest{{Type: "render", Pool: "default"}}); err != nil {
		t.Fatal(err)
	}
	// The old leader is paused past its TTL; "new" takes over.
	clock.Advance(16 * time.Second)
	ecfg.ID = "new"
	if ok, err := NewElector(st, clock, ecfg, nil).Attempt(ctx); err != nil || !ok {
		t.Fatalf("new leader elected = %v, %v", ok, err)
	}
	// The old process resumes mid-tick, still believing it leads.
	_, tickErr := o.Tick(ctx)
	if !errors.Is(tickErr, store.ErrFenced) {
		t.Fatalf("tick of the deposed leader: err = %v, want store.ErrFenced", tickErr)
	}
	ws, err := st.WorkerList(ctx, &store.WorkerListParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 0 {
		t.Fatalf("deposed leader wrote %d worker rows", len(ws))
	}
	if n := len(prov.Instances()); n != 0 {
		t.Fatalf("deposed leader created %d instances", n)
	}
	if !o.recordFenced(tickErr) {
		t.Fatal("recordFenced did not recognise the fenced tick error")
	}
	if o.elector.IsLeader() {
		t.Fatal("deposed elector still trusts its leadership")
	}
	var m dto.Metric
	if err := o.m.fenced.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Fatalf("drover_leader_fenced_writes_total = %v, want 1", got)
	}
}
