package orchestrator

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/sim/simagent"
	"github.com/droverhq/drover/internal/store/sqlite"
)

// newHarnessOn builds a harness with its own database on a shared clock and
// a shared provider view (another deployment on the same account).
func newHarnessOn(t *testing.T, clock *core.FakeClock, prov *sim.Provider) *harness {
	t.Helper()
	ctx := t.Context()
	raw, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "drover.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	if _, err := raw.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	cfg := testConfig()
	cs := &countingStore{Store: raw, calls: map[string]int{}}
	q := queue.New(cs, clock, queue.Config{
		OwnerLimit: cfg.Tasks.OwnerLimit, MaxLost: cfg.Tasks.MaxLost, LeaseDuration: cfg.HeartbeatTimeout.D(),
	}, slog.New(slog.DiscardHandler))
	h := &harness{t: t, ctx: ctx, clock: clock, raw: raw, st: cs, cfg: cfg, q: q, prov: prov,
		fleet: simagent.NewFleet(prov, q, simagent.FleetOptions{})}
	h.o = h.newOrchestrator()
	return h
}

// Two deployments (two databases) on one sim provider account never touch
// each other's instances: neither lists, adopts nor deletes the other's as
// an orphan, and both finish their work.
func TestTwoDeploymentsOneAccount(t *testing.T) {
	clock := core.NewFakeClock(t0)
	acct := sim.New(clock, sim.Options{Cluster: "blue"})
	blue := newHarnessOn(t, clock, acct)
	green := newHarnessOn(t, clock, acct.Cluster("green"))
	step := func() {
		clock.Advance(blue.cfg.Tick.D())
		for _, h := range []*harness{blue, green} {
			if err := h.fleet.Step(h.ctx); err != nil {
				t.Fatalf("fleet step: %v", err)
			}
			rep := h.tick()
			if len(rep.OrphansDeleted) > 0 {
				t.Fatalf("deployment %s deleted orphans %v", h.prov.ClusterName(), rep.OrphansDeleted)
			}
		}
	}
	// Green's long tasks keep three instances busy while blue idles far
	// past the orphan grace.
	green.submit(3, "", params(time.Hour, "succeed"))
	for end := clock.Now().Add(20 * time.Minute); clock.Now().Before(end); {
		step()
	}
	if n := len(green.workersIn(core.WorkerReady)); n != 3 {
		t.Fatalf("green ready workers = %d, want 3", n)
	}
	if ids := blue.prov.IDs(); len(ids) != 0 {
		t.Fatalf("blue sees instances %v of green", ids)
	}
	// Now blue works too, on the same account.
	bt := blue.submit(3, "", params(time.Minute, "succeed"))
	for end := clock.Now().Add(30 * time.Minute); blue.tasksIn(core.TaskSucceeded) < len(bt); {
		if !clock.Now().Before(end) {
			t.Fatalf("blue finished %d of %d tasks", blue.tasksIn(core.TaskSucceeded), len(bt))
		}
		step()
	}
	for _, h := range []*harness{blue, green} {
		if fw := h.failedWorkers(); len(fw) != 0 {
			t.Fatalf("deployment %s has failed workers: %v", h.prov.ClusterName(), fw[0].Failure)
		}
	}
	// Every delete on the account was of the deleting deployment's own
	// instance: green deleted none (its workers are still busy).
	if n := len(green.workersIn(core.WorkerReady)); n != 3 {
		t.Fatalf("green ready workers = %d after blue's run, want 3", n)
	}
	greenIDs := map[string]bool{}
	for _, id := range green.prov.IDs() {
		greenIDs[id] = true
	}
	for _, c := range acct.Calls() {
		if c.Op == "delete" && greenIDs[c.InstanceID] {
			t.Fatalf("green's instance %s was deleted", c.InstanceID)
		}
	}
	if len(greenIDs) != 3 || len(blue.prov.IDs()) == 0 {
		t.Fatalf("instances: green %d, blue %d", len(greenIDs), len(blue.prov.IDs()))
	}
}
