package orchestrator

import (
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/status"
	"github.com/droverhq/drover/internal/store"
)

func TestBreakerSetOpenAndReset(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	st, err := h.o.BreakerSet(h.ctx, keyA, BreakerActionOpen, "")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	eq(t, "status after open", st.Status, core.BreakerOpen)
	eq(t, "persisted", h.breakerState(keyA).Status, core.BreakerOpen)
	// Spawns go to B while A is open.
	h.prov.SetScript(keyB, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	h.submit(1, "alice", params(time.Minute, "succeed"))
	h.step()
	for _, id := range h.spawns() {
		eq(t, "spawn placement while A is open", h.worker(id).Placement, keyB)
	}
	if _, err := h.o.BreakerSet(h.ctx, keyA, BreakerActionReset, ""); err != nil {
		t.Fatalf("reset: %v", err)
	}
	eq(t, "status after reset", h.breakerState(keyA).Status, core.BreakerClosed)
	evs, err := h.raw.EventList(h.ctx, &store.EventListParams{Kinds: []core.EventKind{core.EventBreakerState}})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range evs {
		msgs = append(msgs, e.Message)
	}
	all := strings.Join(msgs, "\n")
	contains(t, "events", all, "breaker closed→open for pool=default gpu=RTX4090 region=EU-RO-1 until")
	contains(t, "events", all, "breaker open→closed for pool=default gpu=RTX4090 region=EU-RO-1: reset by an operator")

	_, err = h.o.BreakerSet(h.ctx, "default/H100/nowhere", BreakerActionReset, "")
	eq(t, "unknown key", core.ErrorCode(err), core.ENOTFOUND)
	_, err = h.o.BreakerSet(h.ctx, keyA, "close", "")
	eq(t, "unknown action", core.ErrorCode(err), core.EINVALID)
}

func TestGlobalSpendCapBlocksSpawns(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *config.Config) {
		c.Pools["default"].Max = 5
		c.Spend.MaxHourlySpend = 1.5
	}})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second, PricePerHour: 0.69})
	h.submit(5, "alice", params(time.Hour, "succeed"))
	h.run(2 * time.Minute)
	eq(t, "spawned under a $1.50 cap at $0.69", len(h.spawns()), 2)
	blocked := strings.Join(h.reports[len(h.reports)-1].Blocked, "; ")
	contains(t, "blocked", blocked, "the global spend.max_hourly_spend $1.50")
	r, err := status.Build(h.ctx, h.raw, h.cfg, h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "spend per hour", r.Spend.PerHour, 1.38)
}

func TestSampleRecordsFleet(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *config.Config) { c.Pools["default"].Max = 2 }})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second, PricePerHour: 0.5})
	h.submit(4, "alice", params(30*time.Second, "succeed"))
	start := h.clock.Now()
	h.run(3 * time.Minute)
	if err := h.o.Sample(h.ctx, start, h.clock.Now()); err != nil {
		t.Fatalf("sample: %v", err)
	}
	series, err := status.Series(h.ctx, h.raw, start, h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "points", len(series.Points), 1)
	p := series.Points[0]
	eq(t, "succeeded", p.Succeeded, 4)
	eq(t, "queued", p.Queued, 0)
	eq(t, "ready workers", p.Workers[string(core.WorkerReady)], 2)
	eq(t, "spend", p.SpendPerHour, 1.0)
	eq(t, "pool spend", p.PoolSpend["default"], 1.0)
	eq(t, "pools", strings.Join(series.Pools, ","), "default")
}

// The poison task of the scenario shows in status as a hint naming it.
func TestStatusHintsPoisonTask(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetScript(keyA, sim.Script{ProvisionTime: 10 * time.Second, BootTime: 20 * time.Second})
	poison := h.submit(1, "bob", params(5*time.Second, "kill"))[0]
	h.runUntil(30*time.Minute, "the poison task fails", func() bool { return h.task(poison).State == core.TaskFailed })
	r, err := status.Build(h.ctx, h.raw, h.cfg, h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	contains(t, "hints", strings.Join(r.Hints, "\n"), "task "+poison.String()+" was running on 3 workers that were lost in the last 30m: it may be what kills them (a poison task)")
}
