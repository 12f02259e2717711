package orchestrator

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	id := func(n byte) uuid.UUID { return uuid.UUID{n} }
	base := PoolInput{Pool: "default", Now: now, Min: 0, Max: 10, Concurrency: 1, MaxSpawnPerTick: 4, IdleTimeout: 5 * time.Minute}
	with := func(f func(*PoolInput)) PoolInput { in := base; f(&in); return in }

	cases := []struct {
		name        string
		in          PoolInput
		desired     int
		spawn       int
		drain       []uuid.UUID
		blockedHas  string
		reasonHas   string
		supplySlots int
	}{
		{name: "idle pool at min 0 does nothing", in: base, desired: 0, spawn: 0, reasonHas: "hold"},
		{name: "min 2 from empty spawns 2", in: with(func(in *PoolInput) { in.Min = 2 }), desired: 2, spawn: 2},
		{name: "3 claimable 2 running 2 ready", in: with(func(in *PoolInput) { in.Claimable, in.Running, in.Ready = 3, 2, 2 }),
			desired: 5, spawn: 3, supplySlots: 2},
		{name: "booting counts as supply (burst never duplicates)", in: with(func(in *PoolInput) { in.Claimable, in.Booting, in.Provisioning, in.Requested = 3, 1, 1, 1 }),
			desired: 3, spawn: 0, supplySlots: 3},
		{name: "max_spawn_per_tick limits", in: with(func(in *PoolInput) { in.Claimable = 9 }), desired: 9, spawn: 4, blockedHas: "max_spawn_per_tick is 4"},
		{name: "clamped to max", in: with(func(in *PoolInput) { in.Claimable, in.MaxSpawnPerTick = 50, 0 }), desired: 10, spawn: 10},
		{name: "concurrency rounds up", in: with(func(in *PoolInput) { in.Claimable, in.Concurrency = 5, 2 }), desired: 3, spawn: 3},
		{name: "idle buffer adds", in: with(func(in *PoolInput) { in.Claimable, in.IdleBuffer = 1, 1 }), desired: 2, spawn: 2},
		{name: "owner-blocked tasks are not demand (I14)", in: with(func(in *PoolInput) { in.Queued, in.OwnerBlocked, in.Running, in.Ready = 44, 39, 5, 5 }),
			desired: 5, spawn: 0, blockedHas: "39 queued tasks are held back"},
		{name: "capped demand is labelled as a lower bound", in: with(func(in *PoolInput) { in.Claimable, in.Running, in.DemandCap, in.MaxSpawnPerTick = 1000, 3, 1000, 0 }),
			desired: 10, spawn: 10, reasonHas: "demand ≥1003 slots (≥1000 claimable + 3 running)"},
		{name: "capped owner-blocked count is labelled", in: with(func(in *PoolInput) { in.OwnerBlocked, in.DemandCap = 1000, 1000 }),
			desired: 0, spawn: 0, blockedHas: "≥1000 queued tasks are held back"},
		{name: "below the cap counts are exact", in: with(func(in *PoolInput) { in.Claimable, in.DemandCap = 7, 1000 }),
			desired: 7, spawn: 4, reasonHas: "demand 7 slots (7 claimable + 0 running)"},
		{name: "spend cap reached blocks", in: with(func(in *PoolInput) { in.Claimable, in.MaxHourlySpend, in.HourlySpend = 2, 1.0, 1.2 }),
			desired: 2, spawn: 0, blockedHas: "max_hourly_spend $1.00"},
		{name: "spend cap leaves room for one", in: with(func(in *PoolInput) {
			in.Claimable, in.Ready, in.MaxHourlySpend, in.HourlySpend, in.PriceEstimate = 3, 1, 1.0, 0.5, 0.4
		}), desired: 3, spawn: 1, blockedHas: "leaves room for 1"},
		{name: "scale down longest idle first", in: with(func(in *PoolInput) {
			in.Ready = 3
			in.Idle = []IdleWorker{{id(1), now.Add(-6 * time.Minute)}, {id(2), now.Add(-10 * time.Minute)}, {id(3), now.Add(-7 * time.Minute)}}
		}), desired: 0, drain: []uuid.UUID{id(2), id(3), id(1)}},
		{name: "scale down only past idle_timeout", in: with(func(in *PoolInput) {
			in.Ready = 2
			in.Idle = []IdleWorker{{id(1), now.Add(-4 * time.Minute)}, {id(2), now.Add(-5 * time.Minute)}}
		}), desired: 0, drain: []uuid.UUID{id(2)}},
		{name: "never below min ready", in: with(func(in *PoolInput) {
			in.Min, in.Ready, in.Booting = 1, 1, 1
			in.Idle = []IdleWorker{{id(1), now.Add(-time.Hour)}}
		}), desired: 1, drain: nil, reasonHas: "hold"},
		{name: "busy workers are never drained", in: with(func(in *PoolInput) {
			in.Ready, in.Running = 3, 1
			in.Idle = []IdleWorker{{id(1), now.Add(-time.Hour)}}
		}), desired: 1, drain: []uuid.UUID{id(1)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.in)
			if d.Desired != tc.desired || d.Spawn != tc.spawn {
				t.Fatalf("desired/spawn = %d/%d, want %d/%d (%s)", d.Desired, d.Spawn, tc.desired, tc.spawn, d.Reason)
			}
			if !slices.Equal(d.Drain, tc.drain) {
				t.Fatalf("drain = %v, want %v", d.Drain, tc.drain)
			}
			if tc.blockedHas != "" && !strings.Contains(strings.Join(d.Blocked, "; "), tc.blockedHas) {
				t.Fatalf("blocked = %q, want it to contain %q", d.Blocked, tc.blockedHas)
			}
			if tc.reasonHas != "" && !strings.Contains(d.Reason, tc.reasonHas) {
				t.Fatalf("reason = %q, want %q", d.Reason, tc.reasonHas)
			}
			if tc.supplySlots != 0 && d.Supply != tc.supplySlots {
				t.Fatalf("supply = %d, want %d", d.Supply, tc.supplySlots)
			}
		})
	}
}
