package orchestrator

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/google/uuid"
)

// A live worker whose instance exited fails as agent-exit in the first
// tick that lists it (no second-list wait), its task is requeued in that
// tick, and the exited instance is deleted.
func TestExitedInstanceFailsAsAgentExitAtOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *config.Config) { c.Pools["default"].Max = 1 }})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	task := h.submit(1, "", params(time.Hour, "succeed"))[0]
	h.runUntil(5*time.Minute, "task running", func() bool { return h.task(task).State == core.TaskRunning })
	w := h.workersIn(core.WorkerReady)[0]

	if !h.prov.Exit(w.InstanceID, "exit status 3") {
		t.Fatalf("exit %s", w.InstanceID)
	}
	rep := h.step()
	eq(t, "failed in the first tick after the exit", rep.Failed[w.ID], core.FailAgentExit)
	contains(t, "reason", h.worker(w.ID).Reason, "exit status 3")
	eq(t, "task requeued in the same tick", h.task(task).State, core.TaskQueued)
	h.runUntil(time.Minute, "exited row terminated", func() bool { return h.worker(w.ID).State == core.WorkerTerminated })
	for _, in := range h.prov.Instances() {
		if in.ID == w.InstanceID && in.State != provider.InstanceGone {
			t.Fatalf("exited instance %s is %s", in.ID, in.State)
		}
	}
	deleted := false
	for _, c := range h.prov.Calls() {
		if c.Op == "delete" && c.InstanceID == w.InstanceID && c.Err == nil {
			deleted = true
		}
	}
	if !deleted {
		t.Fatalf("the exited instance %s was never deleted (it would keep billing)", w.InstanceID)
	}
	h.runUntil(3*time.Minute, "task running again", func() bool { return h.task(task).State == core.TaskRunning })
	f, _ := failures(h.breakerState(keyA))
	eq(t, "an agent that exited while running a task is not a start failure", f, 0)
}

// An exited instance tagged with a worker that has no live row is deleted
// as an orphan in the first tick, without waiting for orphan_grace.
func TestExitedOrphanDeletedAtOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	running := h.prov.Inject(provider.Instance{WorkerID: uuid.NewString(), Pool: "default", Placement: plB})
	exited := h.prov.Inject(provider.Instance{WorkerID: uuid.NewString(), Pool: "default", Placement: plA,
		State: provider.InstanceGone, Exited: true, ExitDetail: "RunPod status EXITED"})
	rep := h.step()
	eq(t, "orphans deleted in the first tick", len(rep.OrphansDeleted), 1)
	eq(t, "the exited one", rep.OrphansDeleted[0], exited)
	ev := h.events(core.EventWorkerOrphan)
	eq(t, "orphan events", len(ev), 1)
	contains(t, "event", ev[0].Message, "RunPod status EXITED")
	h.run(2 * h.cfg.Tick.D())
	for _, r := range h.reports {
		if slices.Contains(r.OrphansDeleted, running) {
			t.Fatalf("the running orphan %s was deleted before orphan_grace", running)
		}
	}
}

// Every candidate out of capacity: one block reason and one event naming
// every candidate tried, not one per candidate.
func TestNoCapacityAnywhereIsOneReason(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetScript(keyA, sim.Script{CapacityAlways: true})
	h.prov.SetScript(keyB, sim.Script{CapacityAlways: true})
	h.submit(2, "", params(time.Minute, "succeed"))
	rep := h.tick()
	eq(t, "spawned", len(rep.Spawned), 0)
	eq(t, "create calls: each candidate once", len(h.createCalls()), 2)
	eq(t, "block reasons", len(rep.Blocked), 1)
	for _, want := range []string{"no capacity anywhere", "all 2 candidates", "gpu=RTX4090 region=EU-RO-1", "gpu=L40S region=EU-SE-1"} {
		contains(t, "reason", rep.Blocked[0], want)
	}
	ev := h.events(core.EventScaleBlocked)
	eq(t, "scale.blocked events", len(ev), 1)
	contains(t, "event", ev[0].Message, "no capacity anywhere")

	// Only one of two out of capacity (the other spawns): no "anywhere".
	h2 := newHarness(t, harnessOpts{cfg: func(c *config.Config) { c.Pools["default"].Max = 1 }})
	h2.prov.SetScript(keyA, sim.Script{CapacityAlways: true})
	h2.submit(1, "", params(time.Minute, "succeed"))
	rep = h2.tick()
	eq(t, "spawned on B", len(rep.Spawned), 1)
	for _, r := range rep.Blocked {
		if strings.Contains(r, "anywhere") {
			t.Fatalf("blocked %q although B had capacity", r)
		}
	}
}

// An account-wide quota refusal (RunPod's 402/401) opens every key of the
// provider at once with one provider.quota event; no candidate after it is
// tried, no spawn loop follows, and the running worker keeps working.
func TestAccountWideQuotaOpensEveryKeyOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *config.Config) { c.Pools["default"].Max = 3 }})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	h.prov.SetScript(keyB, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	first := h.submit(1, "", params(15*time.Second, "succeed"))[0]
	h.runUntil(5*time.Minute, "task running", func() bool { return h.task(first).State == core.TaskRunning })
	w := h.workersIn(core.WorkerReady)[0]

	h.prov.SetAccountQuota(true)
	before := len(h.createCalls())
	more := h.submit(4, "", params(3*time.Second, "succeed"))
	rep := h.step()
	eq(t, "creates after the refusal", len(h.createCalls())-before, 1)
	eq(t, "spawned", len(rep.Spawned), 0)
	for _, key := range []string{keyA, keyB} {
		b := h.breakerState(key)
		eq(t, "breaker "+key, b.Status, core.BreakerOpen)
		contains(t, "breaker reason "+key, b.Reason, "quota")
	}
	q := h.events(core.EventProviderQuota)
	eq(t, "quota events", len(q), 1)
	contains(t, "quota event hint", q[0].Message, "add funds")
	contains(t, "quota event keys", q[0].Message, "gpu=L40S region=EU-SE-1")

	// Within the cooldown: no more creates, no more quota events, and the
	// running worker finishes every task.
	h.runUntil(55*time.Second, "all tasks done on the running worker", func() bool {
		return h.tasksIn(core.TaskSucceeded) == 1+len(more)
	})
	eq(t, "creates within the cooldown", len(h.createCalls())-before, 1)
	eq(t, "quota events within the cooldown", len(h.events(core.EventProviderQuota)), 1)
	eq(t, "running worker unharmed", h.worker(w.ID).State, core.WorkerReady)
}
