package dashboard_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/dashboard"
	"github.com/droverhq/drover/internal/orchestrator"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/server"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/google/uuid"
)

const testToken = "op-secret-token-for-tests"

// XSS payloads every page must render as text.
const (
	xssScript = `<script>window.__xss=(window.__xss||0)+1;alert("xss")</script>`
	xssImg    = `"><img src=x onerror="window.__xss=(window.__xss||0)+1">`
)

// fixture is a dashboard over a real SQLite store holding the seed's
// situation: a healthy worker, two initializing ones, boot-timeout
// failures, an open breaker, tasks (one with hostile text everywhere),
// events, logs and an hour of samples.
type fixture struct {
	st      store.Store
	clock   *core.FakeClock
	cfg     *config.Config
	srv     *httptest.Server
	healthy *core.Worker
	xssTask *core.Task
	// openKey is the breaker that starts open.
	openKey string
}

// newFixture is a fixture on SQLite.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureOn(t, openSQLite(t))
}

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "drover.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st
}

// onBothBackends runs fn on a fixture over SQLite and one over PostgreSQL
// (which fails in CI and skips loudly elsewhere without a test database).
func onBothBackends(t *testing.T, fn func(t *testing.T, f *fixture)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, newFixture(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, newFixtureOn(t, pgtest.Open(t, 4))) })
}

func newFixtureOn(t *testing.T, st store.Store) *fixture {
	t.Helper()
	now := storetest.Base.Add(time.Hour)
	f := &fixture{st: st, clock: core.NewFakeClock(now), openKey: "gpu/RTX4090/US-TX-3"}
	f.cfg = config.Default()
	f.cfg.Auth.OperatorToken = testToken
	f.cfg.Pools = map[string]*config.PoolConfig{}
	f.cfg.Pools["gpu"] = &config.PoolConfig{Provider: "sim", Max: 8,
		Candidates: []config.CandidateConfig{{GPU: "RTX4090", Regions: []string{"EU-RO-1", "US-TX-3"}}}}
	f.seed(t, now)

	h, err := dashboard.New(dashboard.Config{Store: st, Clock: f.clock, Fleet: f.cfg, OperatorToken: testToken,
		Logger: slog.New(slog.DiscardHandler), Breakers: f.surface(t), Refresh: time.Second})
	if err != nil {
		t.Fatalf("dashboard.New: %v", err)
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) seed(t *testing.T, now time.Time) {
	t.Helper()
	ctx := t.Context()
	mk := func(state core.WorkerState, created time.Time, mods func(w *core.Worker)) *core.Worker {
		w := storetest.NewWorker("gpu", state)
		w.Placement, w.GPUType, w.Region, w.PricePerHour = "gpu/RTX4090/EU-RO-1", "RTX4090", "EU-RO-1", 0.69
		w.CreatedAt, w.StateChangedAt = created, created
		if mods != nil {
			mods(w)
		}
		if err := f.st.WorkerInsert(ctx, w); err != nil {
			t.Fatalf("insert worker: %v", err)
		}
		return w
	}
	hb := now.Add(-10 * time.Second)
	util, mem, temp, power := 87, 20480, 64, 301.5
	f.healthy = mk(core.WorkerReady, now.Add(-2*time.Minute), func(w *core.Worker) {
		w.LastHeartbeatAt, w.ReadyAt = &hb, &hb
		w.GPUs = []core.GPU{{Index: 0, Name: "NVIDIA GeForce RTX 4090", MemoryMiB: 24564}}
		w.Metrics = mustJSON(t, map[string]any{"gpus": []core.GPU{{Index: 0, Name: "NVIDIA GeForce RTX 4090", MemoryMiB: 24564,
			MemUsedMiB: &mem, UtilPercent: &util, TempC: &temp, PowerW: &power}}})
	})
	mk(core.WorkerBooting, now.Add(-116*time.Second), nil)
	mk(core.WorkerBooting, now.Add(-117*time.Second), nil)
	failed := mk(core.WorkerFailed, now.Add(-40*time.Minute), func(w *core.Worker) {
		w.Failure, w.Reason = core.FailBootTimeout, "no heartbeat 330s after start"
	})
	if _, err := f.st.WorkerUpdate(ctx, &store.WorkerUpdateParams{Now: now, ID: f.healthy.ID, LastHeartbeat: &hb,
		GPUs: f.healthy.GPUs}); err != nil {
		t.Fatalf("update worker: %v", err)
	}
	if err := f.st.WorkerHeartbeat(ctx, []store.WorkerHeartbeatParams{{Now: hb, ID: f.healthy.ID, Metrics: f.healthy.Metrics}}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}

	// Tasks: 4 done by the healthy worker, one hostile task failed with a
	// hostile error, one queued.
	done := storetest.InsertTasks(t, f.st,
		storetest.NewTask(storetest.Pool("gpu"), storetest.Owner("alice")),
		storetest.NewTask(storetest.Pool("gpu"), storetest.Owner("alice")),
		storetest.NewTask(storetest.Pool("gpu"), storetest.Owner("bob")),
		storetest.NewTask(storetest.Pool("gpu"), storetest.Owner("bob")))
	_ = done
	claimed := storetest.Claim(t, f.st, f.healthy, now.Add(-90*time.Second), 4, 0)
	storetest.Complete(t, f.st, f.healthy, now.Add(-60*time.Second), claimed...)
	bad := storetest.NewTask(storetest.Pool("gpu"), storetest.Owner(xssImg), func(tk *core.Task) {
		tk.Type = xssScript
		tk.Params = mustJSON(t, map[string]string{"prompt": xssScript, "image": xssImg})
		tk.MaxAttempts = 1
	})
	storetest.InsertTasks(t, f.st, bad)
	got := storetest.Claim(t, f.st, f.healthy, now.Add(-50*time.Second), 1, 0)
	if len(got) != 1 {
		t.Fatalf("claimed %d hostile tasks, want 1", len(got))
	}
	f.xssTask = got[0]
	if _, err := queue.FailTask(ctx, f.st, &queue.FailParams{Now: now.Add(-40 * time.Second), WorkerID: f.healthy.ID,
		Lease: storetest.LeaseOf(t, got[0]), Error: "handler crashed: " + xssScript + xssImg}); err != nil {
		t.Fatalf("fail task: %v", err)
	}
	storetest.InsertTasks(t, f.st, storetest.NewTask(storetest.Pool("gpu"), storetest.Owner("carol")))

	// Events and logs.
	var evs []*core.Event
	for i, age := range []int{330, 327, 349, 331} {
		at := now.Add(-time.Duration(28-6*i) * time.Minute)
		evs = append(evs, &core.Event{Time: at, Kind: core.EventWorkerFailed, Pool: "gpu", WorkerID: failed.ID.String(),
			Message: fmt.Sprintf("worker failed: boot-timeout after %ds", age),
			Data: mustJSON(t, map[string]any{"class": core.FailBootTimeout, "age_s": age, "placement": "gpu/RTX4090/EU-RO-1",
				"reason": fmt.Sprintf("no heartbeat %ds after start", age)})})
	}
	evs = append(evs,
		&core.Event{Time: now.Add(-2 * time.Minute), Kind: core.EventWorkerState, Pool: "gpu", WorkerID: f.healthy.ID.String(), Message: "worker ready"},
		&core.Event{Time: now.Add(-40 * time.Second), Kind: core.EventTaskFailed, Pool: "gpu", WorkerID: f.healthy.ID.String(),
			TaskID: f.xssTask.ID.String(), Message: "task failed: " + xssScript + xssImg})
	if err := f.st.EventInsertMany(ctx, evs); err != nil {
		t.Fatalf("insert events: %v", err)
	}
	if err := f.st.LogInsertMany(ctx, []*core.LogLine{
		{Time: now.Add(-55 * time.Second), WorkerID: f.healthy.ID.String(), Stream: "agent", Line: "agent started, 1 GPU"},
		{Time: now.Add(-45 * time.Second), WorkerID: f.healthy.ID.String(), TaskID: f.xssTask.ID.String(), Stream: "stderr", Line: "boom " + xssScript + xssImg},
	}); err != nil {
		t.Fatalf("insert logs: %v", err)
	}

	// The seed's breaker: 4 of 7 starts failed, not blocking; and one
	// breaker an operator opened.
	seedKey := "gpu/RTX4090/EU-RO-1"
	sb := breaker.New(seedKey, now.Add(-30*time.Minute))
	for i := range 7 {
		o := core.BreakerOutcome{Time: now.Add(-time.Duration(28-3*i) * time.Minute), Success: i >= 4, Worker: uuid.NewString()}
		if !o.Success {
			o.Class = core.FailBootTimeout
		}
		breaker.Record(f.cfg.BreakerConfig(), sb, o, o.Time)
	}
	if err := f.st.BreakerPut(ctx, sb); err != nil {
		t.Fatalf("put breaker: %v", err)
	}
	b := breaker.New(f.openKey, now.Add(-10*time.Minute))
	breaker.Trip(f.cfg.BreakerConfig(), b, now.Add(-30*time.Second), "opened by an operator: region maintenance")
	if err := f.st.BreakerPut(ctx, b); err != nil {
		t.Fatalf("put breaker: %v", err)
	}

	// An hour of samples, one a minute.
	var samples []*store.Sample
	for i := 60; i >= 0; i-- {
		at := now.Add(-time.Duration(i) * time.Minute)
		ready := 0
		if i < 3 {
			ready = 1
		}
		samples = append(samples, &store.Sample{Time: at, Pool: store.SampleFleetPool, Queued: 5 + i%7, Claimable: 3 + i%5,
			Running: 1 + i%3, Booting: 2, Ready: ready, Succeeded: i % 4, TasksFailed: i % 9 / 8, SpendPerHour: 0.69 * float64(2+ready)},
			&store.Sample{Time: at, Pool: "gpu", Queued: 5 + i%7, Claimable: 3 + i%5, Running: 1 + i%3, Booting: 2, Ready: ready,
				SpendPerHour: 0.69 * float64(2+ready)})
	}
	if err := f.st.SampleInsertMany(ctx, samples); err != nil {
		t.Fatalf("insert samples: %v", err)
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// breakerState reads one breaker's status from the store.
func (f *fixture) breakerState(t *testing.T, key string) core.BreakerStatus {
	t.Helper()
	all, err := f.st.BreakerGetAll(t.Context())
	if err != nil {
		t.Fatalf("BreakerGetAll: %v", err)
	}
	for _, b := range all {
		if b.Key == key {
			return b.Status
		}
	}
	return core.BreakerClosed
}

// surface is the server's Surface over a real orchestrator (sim provider,
// never ticked): the code behind the API's breaker routes.
func (f *fixture) surface(t *testing.T) *server.Surface {
	t.Helper()
	o, err := orchestrator.New(orchestrator.Deps{Store: f.st, Clock: f.clock, Config: f.cfg,
		Providers: map[string]provider.Provider{"sim": sim.New(f.clock, sim.Options{})}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("orchestrator.New: %v", err)
	}
	return &server.Surface{Store: f.st, Config: f.cfg, Clock: f.clock, Orchestrator: o}
}
