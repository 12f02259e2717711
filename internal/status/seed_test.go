package status_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/status"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/google/uuid"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// now is the seed report's time.
var now = time.Date(2025, 10, 15, 19, 20, 0, 0, time.UTC)

const key = "default/RTX4090/EU-RO-1"

// backends runs fn against a fresh SQLite store and, when
// DROVER_TEST_DATABASE_URL is set, a fresh PostgreSQL schema.
func backends(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "drover.db"))
		if err != nil {
			t.Fatalf("open sqlite: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		if _, err := st.Migrate(t.Context()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		fn(t, st)
	})
	t.Run("postgres", func(t *testing.T) { fn(t, pgtest.Open(t, 4)) })
}

// seedConfig is the seed's configuration: one placement, boot timeout 300
// s, breaker window 30 min, threshold 0.8, min samples 5.
func seedConfig() *config.Config {
	cfg := config.Default()
	cfg.Pools = map[string]*config.PoolConfig{"default": {
		Provider: "runpod", Min: 0, Max: 5, Concurrency: 2,
		BootTimeout: config.Duration(300 * time.Second),
		Candidates:  []config.CandidateConfig{{GPU: "RTX4090", Regions: []string{"EU-RO-1"}, Cloud: "SECURE"}},
	}}
	cfg.Breaker.Window = config.Duration(30 * time.Minute)
	cfg.Breaker.Threshold = 0.8
	cfg.Breaker.MinSamples = 5
	cfg.Breaker.Cooldown = config.Duration(10 * time.Minute)
	return cfg
}

// fleet builds a situation in a real store, step by step, with the times
// the control loop would have written.
type fleet struct {
	t   *testing.T
	ctx context.Context
	st  store.Store
	cfg *config.Config
	br  *core.BreakerState
	n   int
}

func newFleet(t *testing.T, st store.Store, cfg *config.Config) *fleet {
	return &fleet{t: t, ctx: t.Context(), st: st, cfg: cfg, br: breaker.New(key, now.Add(-time.Hour))}
}

func clock(hms string) time.Time {
	t, err := time.Parse("15:04:05", hms)
	if err != nil {
		panic(err)
	}
	return time.Date(now.Year(), now.Month(), now.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

func (f *fleet) must(what string, err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatalf("%s: %v", what, err)
	}
}

// worker inserts a worker created at created in state.
func (f *fleet) worker(created time.Time, state core.WorkerState) *core.Worker {
	f.n++
	w := &core.Worker{ID: uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "seed-worker-%d", f.n)), Pool: "default", Provider: "runpod",
		Placement: key, GPUType: "RTX4090", Region: "EU-RO-1", InstanceID: fmt.Sprintf("pod-%d", f.n), State: state,
		Concurrency: 2, PricePerHour: 0.69, CreatedAt: created, StateChangedAt: created}
	f.must("insert worker", f.st.WorkerInsert(f.ctx, w))
	return w
}

func (f *fleet) event(at time.Time, kind core.EventKind, w *core.Worker, msg string, data map[string]any) {
	b, _ := json.Marshal(data)
	f.must("insert event", f.st.EventInsertMany(f.ctx, []*core.Event{{Time: at, Kind: kind, Pool: w.Pool, WorkerID: w.ID.String(), Message: msg, Data: b}}))
}

// ready records w's first heartbeat at at: state, event, breaker success.
func (f *fleet) ready(w *core.Worker, at time.Time) {
	st := core.WorkerReady
	_, err := f.st.WorkerUpdate(f.ctx, &store.WorkerUpdateParams{Now: at, ID: w.ID, State: &st, ReadyAt: &at, LastHeartbeat: &at})
	f.must("worker ready", err)
	f.event(at, core.EventWorkerState, w, fmt.Sprintf("worker %s: booting → ready: first heartbeat received", w.ID),
		map[string]any{"from": "booting", "to": "ready", "placement": w.Placement})
	breaker.Record(f.cfg.BreakerConfig(), f.br, core.BreakerOutcome{Time: at, Success: true, Worker: w.ID.String()}, at)
}

// bootTimeout fails a worker created ageS seconds before at.
func (f *fleet) bootTimeout(at time.Time, ageS int) {
	w := f.worker(at.Add(-time.Duration(ageS)*time.Second), core.WorkerBooting)
	failed, class := core.WorkerFailed, core.FailBootTimeout
	reason := fmt.Sprintf("no heartbeat %d s after create (boot_timeout 5m0s)", ageS)
	_, err := f.st.WorkerUpdate(f.ctx, &store.WorkerUpdateParams{Now: at, ID: w.ID, State: &failed, Failure: &class, Reason: &reason})
	f.must("fail worker", err)
	f.event(at, core.EventWorkerFailed, w, fmt.Sprintf("worker %s failed (boot-timeout) after %ds in booting: %s", w.ID, ageS, reason),
		map[string]any{"class": class, "from": "booting", "age_s": ageS, "placement": w.Placement, "reason": reason, "held_tasks": false})
	breaker.Record(f.cfg.BreakerConfig(), f.br, core.BreakerOutcome{Time: at, Class: class, Worker: w.ID.String()}, at)
	f.terminated(w, at.Add(20*time.Second))
}

func (f *fleet) terminated(w *core.Worker, at time.Time) {
	st := core.WorkerTerminated
	_, err := f.st.WorkerUpdate(f.ctx, &store.WorkerUpdateParams{Now: at, ID: w.ID, State: &st, TerminatedAt: &at})
	f.must("terminate worker", err)
}

// tasks inserts n tasks created at at.
func (f *fleet) tasks(n int, at time.Time) {
	var ts []*core.Task
	for i := range n {
		ts = append(ts, &core.Task{ID: uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "seed-task-%d-%d", at.Unix(), i)),
			Type: "render", Params: json.RawMessage(`{}`), Owner: "alice", Pool: "default", MaxAttempts: 3, MaxLost: 3,
			Timeout: time.Hour, State: core.TaskQueued, CreatedAt: at, RunAfter: at, UpdatedAt: at})
	}
	_, err := f.st.TaskInsertMany(f.ctx, &store.TaskInsertManyParams{Now: at, Tasks: ts})
	f.must("insert tasks", err)
}

// run claims n tasks on w at claimAt and completes them at doneAt (zero:
// they stay running).
func (f *fleet) run(w *core.Worker, n int, claimAt, doneAt time.Time) {
	claimed, err := f.st.TaskClaim(f.ctx, []*store.TaskClaimParams{{Now: claimAt, WorkerID: w.ID, Pool: "default", Max: n, LeaseDuration: time.Hour}})
	f.must("claim", err)
	got := claimed[0]
	if len(got) != n {
		f.t.Fatalf("claimed %d tasks, want %d", len(got), n)
	}
	if doneAt.IsZero() {
		return
	}
	var items []store.TaskCompletion
	for _, t := range got {
		items = append(items, store.TaskCompletion{Lease: core.Lease{TaskID: t.ID, Token: *t.LeaseToken}, Result: json.RawMessage(`{}`)})
	}
	_, err = f.st.TaskComplete(f.ctx, []*store.TaskCompleteParams{{Now: doneAt, WorkerID: w.ID, Items: items}})
	f.must("complete", err)
}

func (f *fleet) heartbeat(w *core.Worker, at time.Time) {
	f.must("heartbeat", f.st.WorkerHeartbeat(f.ctx, []store.WorkerHeartbeatParams{{Now: at, ID: w.ID}}))
}

func (f *fleet) saveBreaker() { f.must("save breaker", f.st.BreakerPut(f.ctx, f.br)) }

func (f *fleet) report() *status.Report {
	f.t.Helper()
	r, err := status.Build(f.ctx, f.st, f.cfg, now)
	f.must("build status", err)
	return r
}

// seedRecovered is the seed report's situation: in the last 30 minutes 4
// starts failed as boot-timeout at 330/327/349/331 s and 3 reached ready
// (two were scaled down since, one is the healthy worker that heartbeated
// 10 s ago with 4 tasks done); two more are booting for 116 and 117 s;
// 1 task queued, 2 running, 63 completed in the last hour.
func seedRecovered(t *testing.T, st store.Store) *fleet {
	f := newFleet(t, st, seedConfig())
	f.tasks(66, clock("18:40:00"))
	a := f.worker(clock("18:51:00"), core.WorkerBooting)
	f.ready(a, clock("18:53:30"))
	f.bootTimeout(clock("18:52:03"), 330)
	b := f.worker(clock("18:55:00"), core.WorkerBooting)
	f.ready(b, clock("18:57:20"))
	f.bootTimeout(clock("18:57:34"), 327)
	f.run(a, 30, clock("18:54:00"), clock("19:02:00"))
	f.run(b, 29, clock("18:58:00"), clock("19:03:00"))
	f.bootTimeout(clock("19:03:06"), 349)
	f.terminated(a, clock("19:05:00"))
	f.terminated(b, clock("19:06:00"))
	f.bootTimeout(clock("19:07:35"), 331)
	healthy := f.worker(clock("19:08:00"), core.WorkerBooting)
	f.ready(healthy, clock("19:10:05"))
	f.run(healthy, 2, clock("19:10:10"), clock("19:13:00"))
	f.run(healthy, 2, clock("19:13:10"), clock("19:17:00"))
	f.run(healthy, 2, clock("19:17:10"), time.Time{})
	f.heartbeat(healthy, clock("19:19:50"))
	f.worker(clock("19:18:04"), core.WorkerBooting)
	f.worker(clock("19:18:03"), core.WorkerBooting)
	f.saveBreaker()
	return f
}

// seedBlocked is the moment the seed's pasted logs show: 6 of 6 starts
// failed (boot-timeout), the breaker opened at the fifth, one task waits.
func seedBlocked(t *testing.T, st store.Store) *fleet {
	f := newFleet(t, st, seedConfig())
	f.tasks(3, clock("18:40:00"))
	f.bootTimeout(clock("18:52:03"), 330)
	f.bootTimeout(clock("18:57:34"), 327)
	f.bootTimeout(clock("19:03:06"), 349)
	f.bootTimeout(clock("19:07:35"), 331)
	f.bootTimeout(clock("19:13:02"), 336)
	f.bootTimeout(clock("19:14:40"), 342)
	f.saveBreaker()
	return f
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden %s (run go test -update to create it): %v", path, err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func contains(t *testing.T, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%s: %q does not contain %q", what, s, sub)
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestSeedRecovered(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		r := seedRecovered(t, st).report()
		eq(t, "verdict", r.Verdict, status.VerdictHealthy)
		contains(t, "recovered", r.Recovered, "recovered: 4 worker failures in the last 30m")
		eq(t, "queued", r.Queue.Queued, 1)
		eq(t, "running", r.Queue.Running, 2)
		eq(t, "completed in the last hour", r.Queue.CompletedLastHour, 63)
		eq(t, "breakers", len(r.Breakers), 1)
		br := r.Breakers[0]
		eq(t, "breaker failed", br.Failed, 4)
		eq(t, "breaker recent", br.Recent, 7)
		eq(t, "breaker blocking", br.Blocking, false)
		contains(t, "breaker line", br.Summary, "failed 4/7 in last 30m = 57.1%, threshold 80%, min sample 5: not blocking, below threshold")
		eq(t, "live workers", r.Workers.Live, 3)
		eq(t, "healthy", r.Workers.ByHealth[status.HealthHealthy], 1)
		eq(t, "initializing", r.Workers.ByHealth[status.HealthInitializing], 2)
		for _, w := range r.WorkerTable {
			if w.Health == status.HealthHealthy {
				eq(t, "healthy tasks done", w.TasksDone, 4)
				eq(t, "healthy heartbeat age", *w.HeartbeatAgeS, 10.0)
			}
		}
		eq(t, "failures", len(r.Failures), 4)
		hints := strings.Join(r.Hints, "\n")
		contains(t, "hints", hints, "4 of the last 4 failures are boot-timeout at 327–349 s while boot_timeout is 300 s")
		contains(t, "hints", hints, "raise pools.default.boot_timeout or make the image start faster")
		contains(t, "actions", r.Actions[0], "no action needed: the fleet recovered on its own")
		golden(t, "seed_recovered.txt", r.Text())
		checkSchema(t, r)
	})
}

func TestSeedBlocked(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		r := seedBlocked(t, st).report()
		eq(t, "verdict", r.Verdict, status.VerdictBlocked)
		contains(t, "reason", r.Reason, "pool default cannot spawn: the breaker of its only placement is open; next canary at 19:23:02 (3 claimable tasks wait)")
		br := r.Breakers[0]
		eq(t, "breaker failed", br.Failed, 6)
		eq(t, "breaker recent", br.Recent, 6)
		eq(t, "breaker blocking", br.Blocking, true)
		eq(t, "cooldown left", *br.CooldownLeftS, 182.0)
		contains(t, "breaker line", br.Summary, "failed 6/6 in last 30m = 100%, threshold 80%, min sample 5: BLOCKING, cooldown 3m2s left, canary at 19:23:02")
		hints := strings.Join(r.Hints, "\n")
		contains(t, "hints", hints, "6 of the last 6 failures are boot-timeout at 327–349 s while boot_timeout is 300 s")
		contains(t, "hints", hints, "the pool has no other candidate")
		if strings.Contains(hints, "other candidates are still used") {
			t.Errorf("hints promise other candidates to a pool with one: %s", hints)
		}
		eq(t, "recovered", r.Recovered, "")
		contains(t, "actions", strings.Join(r.Actions, "\n"), "drover breaker reset "+key)
		golden(t, "seed_blocked.txt", r.Text())
		checkSchema(t, r)
	})
}
