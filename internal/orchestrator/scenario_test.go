package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

func onlyA(c *config.Config) {
	c.Pools["default"].Candidates = c.Pools["default"].Candidates[:1]
}

// Scenario 1: the seed incident. Pods need 330 s to their first heartbeat.
func TestScenarioSeedIncident(t *testing.T) {
	t.Run("boot_timeout 300s fails, opens the breaker, sends one canary", func(t *testing.T) {
		h := newHarness(t, harnessOpts{cfg: func(c *config.Config) {
			onlyA(c)
			c.Pools["default"].BootTimeout = config.Duration(300 * time.Second)
		}})
		h.prov.SetScript(keyA, sim.Script{ProvisionTime: 30 * time.Second, BootTime: 300 * time.Second})
		h.submit(3, "alice", params(time.Minute, "succeed"))

		h.runUntil(30*time.Minute, "breaker A opens", func() bool { return h.breakerState(keyA).Status == core.BreakerOpen })
		openedAt := h.clock.Now()
		b := h.breakerState(keyA)
		contains(t, "breaker reason", b.Reason, "5/5 recent starts failed (boot-timeout)")
		failed := h.failedWorkers()
		eq(t, "failed workers when the breaker opened", len(failed), 6)
		for _, w := range failed {
			eq(t, "failure class", w.Failure, core.FailBootTimeout)
			contains(t, "failure reason", w.Reason, "boot_timeout 5m0s")
		}
		eq(t, "workers spawned", len(h.spawns()), 6)
		last := h.reports[len(h.reports)-1]
		blocked := strings.Join(last.Blocked, "; ")
		contains(t, "blocked reason", blocked, "not scaling up: breaker open for pool=default gpu=RTX4090 region=EU-RO-1 since 18:10")
		contains(t, "blocked reason", blocked, "recent starts failed (boot-timeout)")

		// Cooldown (1m): no spawn at all.
		n := len(h.spawns())
		h.runUntil(2*time.Minute, "cooldown ends", func() bool { return !h.clock.Now().Before(openedAt.Add(time.Minute - h.cfg.Tick.D())) })
		eq(t, "spawns during cooldown", len(h.spawns()), n)
		// Half-open: exactly one canary, and nothing else while it boots.
		h.step()
		eq(t, "canary spawns", len(h.spawns()), n+1)
		canary := h.spawns()[n]
		eq(t, "breaker status", h.breakerState(keyA).Status, core.BreakerHalfOpen)
		eq(t, "canary worker", h.breakerState(keyA).CanaryWorker, canary.String())
		h.runUntil(10*time.Minute, "the canary fails", func() bool { return h.worker(canary).Failure != "" })
		eq(t, "spawns while the canary booted", len(h.spawns()), n+1)
		eq(t, "canary failure", h.worker(canary).Failure, core.FailBootTimeout)
		b = h.breakerState(keyA)
		eq(t, "breaker after the canary failed", b.Status, core.BreakerOpen)
		contains(t, "re-open reason", b.Reason, "canary worker "+canary.String()+" failed (boot-timeout)")
		eq(t, "cooldown doubled", b.Until.Sub(*b.OpenedAt), 2*time.Minute)

		st, err := BuildStatus(h.ctx, h.raw, h.cfg, h.clock.Now())
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		eq(t, "verdict", st.Verdict, VerdictBlocked)
		hints := strings.Join(st.Hints, "\n")
		contains(t, "hints", hints, "7 of the last 7 failures are boot-timeout at 30")
		contains(t, "hints", hints, "while boot_timeout is 300 s")
		text := st.Text()
		t.Log("\n" + text)
		contains(t, "status text", text, "SPAWNING BLOCKED")
		contains(t, "status text", text, "boot-timeout")
		contains(t, "status text", text, "failed 7/7 in last 30m = 100%, threshold 80%, min sample 5")
	})

	t.Run("default boot_timeout completes the same workload with zero failures", func(t *testing.T) {
		h := newHarness(t, harnessOpts{cfg: onlyA})
		h.prov.SetScript(keyA, sim.Script{ProvisionTime: 30 * time.Second, BootTime: 300 * time.Second})
		ids := h.submit(3, "alice", params(time.Minute, "succeed"))
		h.runUntil(30*time.Minute, "all tasks succeed", func() bool { return h.tasksIn(core.TaskSucceeded) == 3 })
		eq(t, "failed workers", len(h.failedWorkers()), 0)
		eq(t, "spawns", len(h.spawns()), 3)
		for _, id := range ids {
			eq(t, "task lost", h.task(id).Lost, 0)
		}
		f, ok := failures(h.breakerState(keyA))
		eq(t, "breaker failures", f, 0)
		eq(t, "breaker successes", ok, 3)
		st, err := BuildStatus(h.ctx, h.raw, h.cfg, h.clock.Now())
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		eq(t, "verdict", st.Verdict, VerdictHealthy)
		eq(t, "completed in the last hour", st.Queue.CompletedLastHour, 3)
		eq(t, "worker rows", len(st.WorkerTable), 3)
		contains(t, "health", st.WorkerTable[0].Health, "HEALTHY")
	})
}

// Scenario 2: one healthy worker plus six failed starts on placement A.
func TestScenarioPlacementBreakerIsolated(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *config.Config) {
		c.Pools["default"].Max = 1
		c.Pools["default"].BootTimeout = config.Duration(2 * time.Minute)
	}})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	h.submit(40, "", params(time.Minute, "succeed"))
	h.runUntil(5*time.Minute, "first worker ready", func() bool { return len(h.workersIn(core.WorkerReady)) == 1 })
	healthy := h.workersIn(core.WorkerReady)[0]
	eq(t, "healthy placement", healthy.Placement, keyA)

	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, NeverBoot: true})
	h.cfg.Pools["default"].Max = 4
	h.runUntil(15*time.Minute, "breaker A opens", func() bool { return h.breakerState(keyA).Status == core.BreakerOpen })
	failed := h.failedWorkers()
	eq(t, "failed starts", len(failed), 6)
	for _, w := range failed {
		eq(t, "failed placement", w.Placement, keyA)
	}
	eq(t, "breaker B", h.breakerState(keyB).Status, core.BreakerClosed)
	doneBefore := h.worker(healthy.ID).TasksDone
	nSpawns := len(h.spawns())

	h.run(5 * time.Minute)
	w := h.worker(healthy.ID)
	eq(t, "healthy worker state", w.State, core.WorkerReady)
	if w.TasksDone <= doneBefore {
		t.Fatalf("healthy worker did %d tasks, before %d: it should keep completing", w.TasksDone, doneBefore)
	}
	later := h.spawns()[nSpawns-3:] // the replacements of the tick that opened A
	for _, id := range later {
		eq(t, "spawn after A opened", h.worker(id).Placement, keyB)
	}
	for _, id := range h.spawns()[nSpawns:] {
		eq(t, "spawn after A opened", h.worker(id).Placement, keyB)
	}
	eq(t, "ready workers", len(h.workersIn(core.WorkerReady)), 4)
	st, err := BuildStatus(h.ctx, h.raw, h.cfg, h.clock.Now())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	eq(t, "verdict with one of two candidates open", st.Verdict, VerdictDegraded)
}

// Stage timeouts: provisioning that never finishes, and a draining worker
// past drain_timeout.
func TestScenarioStageTimeouts(t *testing.T) {
	t.Run("provision_timeout", func(t *testing.T) {
		h := newHarness(t, harnessOpts{cfg: func(c *config.Config) {
			onlyA(c)
			c.Pools["default"].Max = 1
		}})
		h.prov.SetScript(keyA, sim.Script{ProvisionTime: time.Hour})
		h.submit(1, "", params(time.Minute, "succeed"))
		first := h.tick().Spawned[0]
		h.runUntil(11*time.Minute, "provision timeout", func() bool { return h.worker(first).Failure != "" })
		w := h.worker(first)
		eq(t, "class", w.Failure, core.FailProvisionTimeout)
		if age := h.clock.Now().Sub(w.CreatedAt); age <= config.DefaultProvisionTimeout || age > config.DefaultProvisionTimeout+h.cfg.Tick.D() {
			t.Fatalf("failed at age %s, want just past provision_timeout %s", age, config.DefaultProvisionTimeout)
		}
		f, _ := failures(h.breakerState(keyA))
		eq(t, "breaker failures", f, 1)
	})
	t.Run("drain_timeout requeues the held task", func(t *testing.T) {
		h := newHarness(t, harnessOpts{cfg: func(c *config.Config) {
			c.Pools["default"].Max = 1
			c.Pools["default"].DrainTimeout = config.Duration(time.Minute)
		}})
		h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
		task := h.submit(1, "", params(time.Hour, "succeed"))[0]
		h.runUntil(5*time.Minute, "task running", func() bool { return h.task(task).State == core.TaskRunning })
		w := h.workersIn(core.WorkerReady)[0]
		// An operator drains it (what `drover workers drain` writes: a
		// request the next tick applies).
		if err := h.raw.WorkerRequestPut(h.ctx, &store.WorkerRequest{WorkerID: w.ID, Action: store.WorkerActionDrain,
			Reason: "operator", RequestedBy: "operator", RequestedAt: h.clock.Now()}); err != nil {
			t.Fatal(err)
		}
		h.tick()
		eq(t, "draining after the next tick", h.worker(w.ID).State, core.WorkerDraining)
		h.run(50 * time.Second)
		eq(t, "still draining within drain_timeout", h.worker(w.ID).State, core.WorkerDraining)
		eq(t, "task still running", h.task(task).State, core.TaskRunning)
		h.runUntil(time.Minute, "terminating", func() bool { return h.worker(w.ID).State != core.WorkerDraining })
		tk := h.task(task)
		if tk.Lost != 1 {
			t.Fatalf("task lost = %d, want 1 (requeued by the drain timeout)", tk.Lost)
		}
		eq(t, "drained worker has no failure", h.worker(w.ID).Failure, core.FailureClass(""))
	})
}

// Scenario 3: a poison task kills every worker that runs it.
func TestScenarioPoisonTask(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	poison := h.submit(1, "bob", params(5*time.Second, "kill"))[0]
	normal := h.submit(5, "alice", params(time.Minute, "succeed"))

	h.runUntil(30*time.Minute, "poison task fails and the others succeed", func() bool {
		return h.task(poison).State == core.TaskFailed && h.tasksIn(core.TaskSucceeded) == 5
	})
	p := h.task(poison)
	eq(t, "poison error", p.Error, "worker lost 3 times while running this task")
	eq(t, "poison lost", p.Lost, 3)
	for _, id := range normal {
		eq(t, "normal task", h.task(id).State, core.TaskSucceeded)
	}
	failed := h.failedWorkers()
	eq(t, "workers killed", len(failed), 3)
	for _, w := range failed {
		eq(t, "class", w.Failure, core.FailHeartbeatLost)
		if w.ReadyAt == nil {
			t.Fatalf("worker %s failed before ready", w.ID)
		}
	}
	if n := len(h.spawns()); n <= 3 {
		t.Fatalf("spawns = %d, want replacements beyond the first 3", n)
	}
	b := h.breakerState(keyA)
	f, _ := failures(b)
	eq(t, "breaker failures counted", f, 0)
	eq(t, "breaker status", b.Status, core.BreakerClosed)
}

// Scenario 4: List errors for three ticks change nothing destructive.
func TestScenarioListErrorsFailClosed(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *config.Config) {
		c.Pools["default"].Max = 2
		c.Pools["default"].OrphanGrace = config.Duration(5 * time.Second)
	}})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	tasks := h.submit(2, "", params(time.Hour, "succeed"))
	h.runUntil(5*time.Minute, "two tasks running", func() bool { return h.tasksIn(core.TaskRunning) == 2 })

	orphan := h.prov.Inject(provider.Instance{WorkerID: uuid.NewString(), Pool: "default", Placement: plA})
	h.step() // the orphan is seen once
	victim := h.workersIn(core.WorkerReady)[0]
	h.prov.Kill(victim.InstanceID)
	h.prov.FailList(3)
	for i := range 3 {
		rep := h.step()
		if rep.ListErrors["sim"] == "" {
			t.Fatalf("tick %d: list error not reported", i)
		}
		eq(t, "orphans deleted while List fails", len(rep.OrphansDeleted), 0)
		eq(t, "failures while List fails", len(rep.Failed), 0)
		eq(t, "requeued while List fails", rep.Requeued, 0)
		eq(t, "victim missing lists", h.worker(victim.ID).MissingLists, 0)
		eq(t, "running tasks", h.tasksIn(core.TaskRunning), 2)
	}
	ev := h.events(core.EventTick)
	contains(t, "tick event", ev[len(ev)-1].Message, "provider list failed for sim: destructive reconciliation skipped")

	rep := h.step() // List recovers
	eq(t, "orphan deleted on recovery", strings.Join(rep.OrphansDeleted, ","), orphan)
	eq(t, "victim missing lists", h.worker(victim.ID).MissingLists, 1)
	eq(t, "no vanished yet", len(rep.Failed), 0)
	rep = h.step()
	eq(t, "victim vanished", rep.Failed[victim.ID], core.FailVanished)
	eq(t, "requeued", rep.Requeued, 1)
	for _, id := range tasks {
		if tk := h.task(id); tk.Lost > 1 || tk.State == core.TaskFailed {
			t.Fatalf("task %s: state %s lost %d", id, tk.State, tk.Lost)
		}
	}
}

// Scenario 5: orphans after the grace; vanished instances and their tasks.
func TestScenarioOrphanAndVanished(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *config.Config) { c.Pools["default"].Max = 1 }})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	task := h.submit(1, "", params(time.Hour, "succeed"))[0]
	h.runUntil(5*time.Minute, "task running", func() bool { return h.task(task).State == core.TaskRunning })

	injectedAt := h.clock.Now()
	orphan := h.prov.Inject(provider.Instance{WorkerID: uuid.NewString(), Pool: "default", Placement: plB})
	var deletedAt time.Time
	h.runUntil(config.DefaultOrphanGrace+time.Minute, "orphan deleted", func() bool {
		last := h.reports[len(h.reports)-1]
		if slices.Contains(last.OrphansDeleted, orphan) {
			deletedAt = last.Time
			return true
		}
		return false
	})
	if age := deletedAt.Sub(injectedAt); age < config.DefaultOrphanGrace || age > config.DefaultOrphanGrace+2*h.cfg.Tick.D() {
		t.Fatalf("orphan deleted %s after it appeared, want orphan_grace %s (+ at most two ticks)", age, config.DefaultOrphanGrace)
	}
	if len(h.events(core.EventWorkerOrphan)) != 1 {
		t.Fatalf("want one orphan event")
	}

	w := h.workersIn(core.WorkerReady)[0]
	h.prov.Kill(w.InstanceID)
	rep := h.step()
	eq(t, "first missing list: not failed", len(rep.Failed), 0)
	eq(t, "task still running", h.task(task).State, core.TaskRunning)
	rep = h.step()
	eq(t, "vanished on the second good list", rep.Failed[w.ID], core.FailVanished)
	tk := h.task(task)
	eq(t, "task requeued in the same tick", tk.State, core.TaskQueued)
	eq(t, "task lost count", tk.Lost, 1)
	eq(t, "replacement spawned in the same tick", len(rep.Spawned), 1)
	h.runUntil(3*time.Minute, "task running again", func() bool { return h.task(task).State == core.TaskRunning })
	eq(t, "vanished row terminated", h.worker(w.ID).State, core.WorkerTerminated)
	f, _ := failures(h.breakerState(keyA))
	eq(t, "vanished is not a start failure", f, 0)
}

// Scenario 6: scale-down and booting supply.
func TestScenarioScaleDown(t *testing.T) {
	t.Run("drains idle workers from their last task, never busy ones, never below min", func(t *testing.T) {
		h := newHarness(t, harnessOpts{cfg: func(c *config.Config) {
			c.Pools["default"].Min = 1
			c.Pools["default"].IdleTimeout = config.Duration(5 * time.Minute)
		}})
		h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
		short := h.submit(1, "a", params(time.Minute, "succeed"))[0]
		mid := h.submit(1, "b", params(3*time.Minute, "succeed"))[0]
		long := h.submit(1, "c", params(20*time.Minute, "succeed"))[0]
		h.runUntil(2*time.Minute, "three tasks running", func() bool { return h.tasksIn(core.TaskRunning) == 3 })
		longWorker := *h.task(long).WorkerID

		h.run(40 * time.Minute)
		for _, id := range []uuid.UUID{short, mid, long} {
			tk := h.task(id)
			eq(t, "task state", tk.State, core.TaskSucceeded)
			eq(t, "task lost", tk.Lost, 0)
		}
		drains := h.events(core.EventScaleDown)
		eq(t, "scale-down events", len(drains), 2)
		for _, e := range drains {
			wid := uuid.MustParse(e.WorkerID)
			if wid == longWorker {
				t.Fatalf("the busy worker was drained at %s", e.Time)
			}
			w := h.worker(wid)
			eq(t, "drained worker state", w.State, core.WorkerTerminated)
			if w.Failure != "" {
				t.Fatalf("drained worker has failure %s", w.Failure)
			}
			idle := e.Time.Sub(*w.LastTaskAt)
			if idle < 5*time.Minute || idle > 5*time.Minute+h.cfg.Tick.D() {
				t.Fatalf("worker drained %s after its last task, want idle_timeout 5m", idle)
			}
		}
		// The long task's worker stays: min is 1.
		eq(t, "remaining ready worker", h.workersIn(core.WorkerReady)[0].ID, longWorker)
		f, ok := failures(h.breakerState(keyA))
		eq(t, "breaker failures after scale-down", f, 0)
		eq(t, "breaker successes", ok, 3)
	})

	t.Run("booting counts as supply: a burst never duplicates spawns", func(t *testing.T) {
		h := newHarness(t, harnessOpts{cfg: func(c *config.Config) {
			c.Pools["default"].Max = 10
			c.Tasks.OwnerLimit = 0 // unlimited: all ten are claimable
		}})
		h.prov.SetScript(keyA, sim.Script{ProvisionTime: 30 * time.Second, BootTime: 90 * time.Second})
		h.submit(10, "", params(10*time.Minute, "succeed"))
		rep := h.tick()
		eq(t, "first tick spawns max_spawn_per_tick", len(rep.Spawned), 4)
		h.run(4 * time.Minute)
		eq(t, "total spawns", len(h.spawns()), 10)
		eq(t, "create calls", len(h.createCalls()), 10)
		eq(t, "ready workers", len(h.workersIn(core.WorkerReady)), 10)
	})
}

// Scenario 7: incident I14, tasks held back by the owner limit are not demand.
func TestScenarioOwnerLimitDemand(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *config.Config) { c.Pools["default"].Max = 10 }})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	h.submit(49, "alice", params(time.Hour, "succeed"))
	h.run(5 * time.Minute)
	eq(t, "spawns", len(h.spawns()), 5)
	eq(t, "running", h.tasksIn(core.TaskRunning), 5)
	eq(t, "queued", h.tasksIn(core.TaskQueued), 44)
	d := h.reports[len(h.reports)-1].Decisions["default"]
	eq(t, "demand", d.Demand, 5)
	eq(t, "spawn", d.Spawn, 0)
	contains(t, "blocked", strings.Join(d.Blocked, ";"), "44 queued tasks are held back by their owner's running limit")
	st, err := BuildStatus(h.ctx, h.raw, h.cfg, h.clock.Now())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	eq(t, "claimable", st.Queue.Claimable, 0)
	contains(t, "hints", strings.Join(st.Hints, "\n"), "claimable 0 although 44 queued: owner alice at its limit 5/5")
}

// Scenario 8: a crash between the row insert and the provider's answer.
func TestScenarioCrashDuringSpawn(t *testing.T) {
	row := func(h *harness) *core.Worker {
		w := &core.Worker{ID: uuid.New(), Pool: "default", Provider: "sim", Placement: keyA, GPUType: plA.GPU, Region: plA.Region,
			State: core.WorkerRequested, TokenHash: strings.Repeat("0", 64), Concurrency: 1, CreatedAt: h.clock.Now(), StateChangedAt: h.clock.Now()}
		if err := h.raw.WorkerInsert(h.ctx, w); err != nil {
			t.Fatalf("insert: %v", err)
		}
		return w
	}
	t.Run("instance created, answer lost: adopted, no duplicate, no orphan", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
		task := h.submit(1, "", params(time.Minute, "succeed"))[0]
		w := row(h)
		inst, err := h.prov.Create(h.ctx, &provider.CreateRequest{WorkerID: w.ID.String(), Pool: "default", Placement: plA})
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		h.o = h.newOrchestrator() // the restart
		rep := h.tick()
		eq(t, "no spawn while the requested row counts as supply", len(rep.Spawned), 0)
		eq(t, "row untouched within one tick", h.worker(w.ID).State, core.WorkerRequested)
		h.step()
		got := h.worker(w.ID)
		eq(t, "adopted", got.InstanceID, inst.ID)
		if got.State == core.WorkerRequested || got.Failure != "" {
			t.Fatalf("row state %s failure %q", got.State, got.Failure)
		}
		h.runUntil(5*time.Minute, "task done", func() bool { return h.task(task).State == core.TaskSucceeded })
		eq(t, "create calls", len(h.createCalls()), 1)
		eq(t, "worker rows", len(h.allWorkers()), 1)
		eq(t, "orphan events", len(h.events(core.EventWorkerOrphan)), 0)
	})
	t.Run("create answered 5xx and could not be checked: row kept, instance adopted, no second create", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second, MaybeCreatedErrors: 1})
		task := h.submit(1, "", params(time.Minute, "succeed"))[0]
		rep := h.tick()
		eq(t, "spawned (the row counts as supply)", len(rep.Spawned), 1)
		w := h.worker(rep.Spawned[0])
		eq(t, "row kept requested", w.State, core.WorkerRequested)
		eq(t, "not failed", w.Failure, core.FailureClass(""))
		contains(t, "event", h.events(core.EventProviderError)[0].Message, "the next good provider list adopts its instance or fails the worker")
		h.step()
		got := h.worker(w.ID)
		eq(t, "adopted", got.InstanceID, h.prov.Instances()[0].ID)
		h.runUntil(5*time.Minute, "task done", func() bool { return h.task(task).State == core.TaskSucceeded })
		eq(t, "create calls", len(h.createCalls()), 1)
		eq(t, "instances", len(h.prov.Instances()), 1)
		eq(t, "worker rows", len(h.allWorkers()), 1)
		eq(t, "orphan events", len(h.events(core.EventWorkerOrphan)), 0)
	})
	t.Run("row inserted, create never sent: failed, one replacement", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
		task := h.submit(1, "", params(time.Minute, "succeed"))[0]
		w := row(h)
		h.o = h.newOrchestrator()
		h.tick()
		rep := h.step()
		eq(t, "interrupted row failed", rep.Failed[w.ID], core.FailProvider)
		eq(t, "replacement spawned in the same tick", len(rep.Spawned), 1)
		h.runUntil(5*time.Minute, "task done", func() bool { return h.task(task).State == core.TaskSucceeded })
		eq(t, "create calls", len(h.createCalls()), 1)
		eq(t, "instances", len(h.prov.Instances()), 1)
		eq(t, "orphan events", len(h.events(core.EventWorkerOrphan)), 0)
		eq(t, "failed row terminated", h.worker(w.ID).State, core.WorkerTerminated)
		f, _ := failures(h.breakerState(keyA))
		eq(t, "an interrupted spawn is not a start failure", f, 0)
	})
}

// Scenario 9: a capacity error on the first candidate uses the second in the
// same tick.
func TestScenarioCapacityFallback(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetScript(keyA, sim.Script{CapacityAlways: true})
	h.prov.SetScript(keyB, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	h.submit(1, "", params(time.Minute, "succeed"))
	rep := h.tick()
	eq(t, "spawned", len(rep.Spawned), 1)
	eq(t, "placement", h.worker(rep.Spawned[0]).Placement, keyB)
	eq(t, "capacity failures this tick", len(rep.Failed), 1)
	for id, class := range rep.Failed {
		eq(t, "class", class, core.FailCapacity)
		eq(t, "failed placement", h.worker(id).Placement, keyA)
	}
	calls := h.createCalls()
	eq(t, "create calls", len(calls), 2)
	eq(t, "first call", calls[0].Placement, plA)
	eq(t, "second call", calls[1].Placement, plB)
	f, _ := failures(h.breakerState(keyA))
	eq(t, "capacity counts as a start failure", f, 1)

	// The failed row is not counted again by later ticks.
	h.step()
	h.step()
	f, _ = failures(h.breakerState(keyA))
	eq(t, "capacity failure counted once", f, 1)
	eq(t, "failed spawn row", h.worker(uuid.MustParse(calls[0].WorkerID)).State, core.WorkerTerminated)
}

// Fail closed: while List fails, a provisioning worker is not failed for
// provision_timeout (its instance may well be running).
func TestProvisionTimeoutWaitsForAGoodList(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	// The agent never registers, so only the provider list could move the
	// worker on from provisioning.
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 30 * time.Second, NeverBoot: true})
	h.submit(1, "", params(time.Minute, "succeed"))
	rep := h.tick()
	eq(t, "spawned", len(rep.Spawned), 1)
	id := rep.Spawned[0]
	h.prov.FailList(1000)
	h.run(config.DefaultProvisionTimeout + time.Minute)
	if w := h.worker(id); w.Failure != "" || w.State != core.WorkerProvisioning {
		t.Fatalf("worker %s failed (%s: %s) while List failed", w.State, w.Failure, w.Reason)
	}
	f, _ := failures(h.breakerState(keyA))
	eq(t, "breaker failures during the List outage", f, 0)
}

// Scenario 10: scale-downs and operator terminations never move the breaker.
func TestScenarioNormalTerminationsLeaveBreaker(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *config.Config) {
		c.Pools["default"].Max = 2
		c.Pools["default"].IdleTimeout = config.Duration(time.Minute)
	}})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	h.submit(2, "", params(30*time.Second, "succeed"))
	h.runUntil(10*time.Minute, "scaled to zero", func() bool {
		return h.tasksIn(core.TaskSucceeded) == 2 && len(h.workersIn(core.WorkerTerminated)) == 2
	})
	before := h.breakerState(keyA)
	f, ok := failures(before)
	eq(t, "failures after scale-down", f, 0)
	eq(t, "successes", ok, 2)

	task := h.submit(1, "", params(time.Hour, "succeed"))[0]
	h.runUntil(5*time.Minute, "task running", func() bool { return h.task(task).State == core.TaskRunning })
	w := h.workersIn(core.WorkerReady)[0]
	// The operator terminates the worker (what `drover workers terminate`
	// writes: a request the next tick applies).
	if err := h.raw.WorkerRequestPut(h.ctx, &store.WorkerRequest{WorkerID: w.ID, Action: store.WorkerActionTerminate,
		Reason: "operator: terminate", RequestedBy: "operator", RequestedAt: h.clock.Now()}); err != nil {
		t.Fatalf("operator terminate: %v", err)
	}
	h.runUntil(time.Minute, "terminated", func() bool { return h.worker(w.ID).State == core.WorkerTerminated })
	after := h.breakerState(keyA)
	f, _ = failures(after)
	eq(t, "failures after operator termination", f, 0)
	eq(t, "consecutive", after.Consecutive, 0)
	eq(t, "status", after.Status, core.BreakerClosed)
	eq(t, "worker failure class", h.worker(w.ID).Failure, core.FailureClass(""))
}

// Scenario 11: a quota error opens the key at once.
func TestScenarioQuotaTrips(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetScript(keyA, sim.Script{QuotaError: true})
	h.prov.SetScript(keyB, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	h.submit(1, "", params(time.Minute, "succeed"))
	rep := h.tick()
	b := h.breakerState(keyA)
	eq(t, "breaker A", b.Status, core.BreakerOpen)
	contains(t, "reason", b.Reason, "quota")
	eq(t, "spawned on B", h.worker(rep.Spawned[0]).Placement, keyB)
	ev := h.events(core.EventBreakerState)
	contains(t, "breaker event", ev[len(ev)-1].Message, "breaker opened at once for pool=default gpu=RTX4090 region=EU-RO-1: quota")
	rep = h.step()
	eq(t, "no second attempt on A", len(h.createCalls()), 2)
	_ = rep
}

// recordingProvider remembers create requests (to check the token).
type recordingProvider struct {
	provider.Provider
	reqs []*provider.CreateRequest
}

func (r *recordingProvider) Create(ctx context.Context, req *provider.CreateRequest) (*provider.Instance, error) {
	r.reqs = append(r.reqs, req)
	return r.Provider.Create(ctx, req)
}

func TestSpawnRowFirstWithHashedToken(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	rp := &recordingProvider{Provider: h.prov}
	o, err := New(Deps{Store: h.st, Queue: h.q, Providers: map[string]provider.Provider{"sim": rp}, Clock: h.clock, Config: h.cfg})
	if err != nil {
		t.Fatal(err)
	}
	h.submit(1, "", params(time.Minute, "succeed"))
	rep, err := o.Tick(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "spawned", len(rep.Spawned), 1)
	req := rp.reqs[0]
	w := h.worker(rep.Spawned[0])
	token := req.Env["DROVER_TOKEN"]
	sum := sha256.Sum256([]byte(token))
	eq(t, "token hash", w.TokenHash, hex.EncodeToString(sum[:]))
	eq(t, "token length", len(token), 64)
	eq(t, "DROVER_SERVER", req.Env["DROVER_SERVER"], "http://127.0.0.1:8080")
	eq(t, "DROVER_WORKER_ID", req.Env["DROVER_WORKER_ID"], w.ID.String())
	eq(t, "pool env", req.Env["HF_HOME"], "/cache")
	eq(t, "image", req.Image, "registry.example.com/worker:1")
	eq(t, "state", w.State, core.WorkerProvisioning)
	for _, e := range h.events() {
		if strings.Contains(e.Message, token) || strings.Contains(string(e.Data), token) {
			t.Fatalf("event %s leaks the worker token", e.Kind)
		}
	}
}

// Observe must cost the same number of queries for 10 and 1,000 workers.
func TestTickQueriesConstant(t *testing.T) {
	count := func(n int) map[string]int {
		h := newHarness(t, harnessOpts{cfg: func(c *config.Config) {
			c.Pools["default"].Min = n
			c.Pools["default"].Max = n
		}})
		now := h.clock.Now()
		for range n {
			id := uuid.New()
			inst := h.prov.Inject(provider.Instance{WorkerID: id.String(), Pool: "default", Placement: plA})
			w := &core.Worker{ID: id, Pool: "default", Provider: "sim", Placement: keyA, InstanceID: inst, State: core.WorkerReady,
				TokenHash: strings.Repeat("0", 64), Concurrency: 1, CreatedAt: now, StateChangedAt: now, ReadyAt: &now, LastHeartbeatAt: &now}
			if err := h.raw.WorkerInsert(h.ctx, w); err != nil {
				t.Fatalf("insert worker: %v", err)
			}
		}
		h.submit(3, "", params(time.Minute, "succeed"))
		h.st.reset()
		rep := h.tick()
		eq(t, "spawns", len(rep.Spawned), 0)
		eq(t, "failures", len(rep.Failed), 0)
		eq(t, "list calls", h.prov.CallCount("list"), 1)
		return h.st.reset()
	}
	small, large := count(10), count(1000)
	if len(small) == 0 {
		t.Fatal("no store calls counted")
	}
	for m, n := range large {
		if small[m] != n {
			t.Fatalf("store calls differ: 10 workers %v, 1000 workers %v", small, large)
		}
	}
	eq(t, "WorkerList calls", large["WorkerList"], 1)
	eq(t, "WorkerUpdate calls in a steady tick", large["WorkerUpdate"], 0)
}

// An idle fleet does not write a tick event every tick.
func TestIdleTicksWriteNoEvents(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	h.submit(1, "", params(30*time.Second, "succeed"))
	h.runUntil(20*time.Minute, "scaled to zero", func() bool {
		return h.tasksIn(core.TaskSucceeded) == 1 && len(h.workersIn(core.WorkerTerminated)) == 1
	})
	h.step()
	n := len(h.events())
	h.run(time.Minute)
	eq(t, "events written by 30 idle ticks", len(h.events()), n)
}
