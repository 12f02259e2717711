package breaker

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
)

var t0 = time.Date(2025, 10, 15, 12, 4, 0, 0, time.UTC)

const key = "default/RTX4090/EU-RO-1"

func fail(class core.FailureClass, at time.Time, worker string) core.BreakerOutcome {
	return core.BreakerOutcome{Time: at, Class: class, Worker: worker}
}

func ok(at time.Time, worker string) core.BreakerOutcome {
	return core.BreakerOutcome{Time: at, Success: true, Worker: worker}
}

func TestWithDefaults(t *testing.T) {
	got := Config{}.WithDefaults()
	want := Config{Window: 30 * time.Minute, Threshold: 0.8, MinSamples: 5, MaxConsecutive: 5,
		Cooldown: time.Minute, MaxCooldown: 30 * time.Minute, StartGrace: 5 * time.Minute}
	if got != want {
		t.Fatalf("WithDefaults() = %+v, want %+v", got, want)
	}
	custom := Config{Window: time.Hour, Threshold: 0.5, MinSamples: 2, MaxConsecutive: 3,
		Cooldown: 2 * time.Minute, MaxCooldown: time.Hour, StartGrace: time.Minute}
	if got := custom.WithDefaults(); got != custom {
		t.Fatalf("WithDefaults changed explicit values: %+v", got)
	}
}

// TestRecordTrips replays sequences of outcomes (one a minute) and checks
// the state after the last one.
func TestRecordTrips(t *testing.T) {
	F, S := false, true
	tests := []struct {
		name       string
		cfg        Config
		seq        []bool // true = success
		wantStatus core.BreakerStatus
		wantReason string
	}{
		{"seed incident 6/6 failures opens", Config{}, []bool{F, F, F, F, F, F}, core.BreakerOpen, "5/5 recent starts failed (boot-timeout)"},
		{"4/7 = 57% stays closed", Config{}, []bool{S, F, S, F, S, F, F}, core.BreakerClosed, ""},
		{"6/7 = 86% opens at threshold 0.85", Config{Threshold: 0.85, MaxConsecutive: 10}, []bool{S, F, F, F, F, F, F}, core.BreakerOpen, "6/7 recent starts failed"},
		{"exactly threshold 4/5 opens", Config{}, []bool{S, F, F, F, F}, core.BreakerOpen, "4/5 recent starts failed"},
		{"below min samples stays closed", Config{MaxConsecutive: 10}, []bool{F, F, F, F}, core.BreakerClosed, ""},
		{"min samples reached opens", Config{MaxConsecutive: 10, MinSamples: 3}, []bool{F, F, F}, core.BreakerOpen, "3/3 recent starts failed"},
		{"consecutive trips below rate", Config{Threshold: 1, MinSamples: 100}, []bool{S, S, S, S, S, F, F, F, F, F}, core.BreakerOpen, "5 start failures in a row"},
		{"success resets consecutive", Config{Threshold: 1, MinSamples: 100}, []bool{F, F, F, F, S, F, F, F, F}, core.BreakerClosed, ""},
		{"all successes", Config{}, []bool{S, S, S, S, S, S}, core.BreakerClosed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := New(key, t0)
			var trans []string
			for i, s := range tt.seq {
				now := t0.Add(time.Duration(i) * time.Minute)
				o := ok(now, fmt.Sprintf("w%d", i))
				if !s {
					o = fail(core.FailBootTimeout, now, fmt.Sprintf("w%d", i))
				}
				if tr := Record(tt.cfg, st, o, now); tr != "" {
					trans = append(trans, tr)
				}
				if st.Status == core.BreakerOpen {
					break
				}
			}
			if st.Status != tt.wantStatus {
				t.Fatalf("status = %s, want %s (outcomes %d, consecutive %d)", st.Status, tt.wantStatus, len(st.Outcomes), st.Consecutive)
			}
			if tt.wantStatus == core.BreakerOpen {
				if len(trans) != 1 || trans[0] != "closed→open" {
					t.Fatalf("transitions = %v, want [closed→open]", trans)
				}
				if !strings.Contains(st.Reason, tt.wantReason) {
					t.Fatalf("reason = %q, want it to contain %q", st.Reason, tt.wantReason)
				}
				if st.Until == nil || st.OpenedAt == nil || st.Until.Sub(*st.OpenedAt) != time.Minute {
					t.Fatalf("first trip must open for 1m: opened %v until %v", st.OpenedAt, st.Until)
				}
			} else if len(trans) != 0 {
				t.Fatalf("unexpected transitions %v", trans)
			}
		})
	}
}

func TestWindowTrimsOldOutcomes(t *testing.T) {
	cfg := Config{MaxConsecutive: 100}
	st := New(key, t0)
	// Four failures, then a long pause: they age out of the 30m window.
	for i := range 4 {
		Record(cfg, st, fail(core.FailBootTimeout, t0.Add(time.Duration(i)*time.Minute), "old"), t0.Add(time.Duration(i)*time.Minute))
	}
	later := t0.Add(time.Hour)
	if tr := Record(cfg, st, fail(core.FailBootTimeout, later, "new"), later); tr != "" {
		t.Fatalf("old failures must not count: transition %q", tr)
	}
	if len(st.Outcomes) != 1 {
		t.Fatalf("outcomes = %d, want 1 after trimming", len(st.Outcomes))
	}
	sum := Summarize(cfg, st, later)
	if sum.Failed != 1 || sum.Total != 1 {
		t.Fatalf("summary counts %d/%d, want 1/1", sum.Failed, sum.Total)
	}
}

func TestCooldownDoubling(t *testing.T) {
	cfg := Config{}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for trips, w := range want {
		if got := cfg.CooldownFor(trips); got != w*time.Minute {
			t.Errorf("CooldownFor(%d) = %v, want %v", trips, got, w*time.Minute)
		}
	}

	// The same through the state machine: trip, wait, canary fails, …
	st := New(key, t0)
	now := t0
	for range 5 {
		Record(cfg, st, fail(core.FailBootTimeout, now, "w"), now)
	}
	if st.Status != core.BreakerOpen {
		t.Fatalf("status %s, want open", st.Status)
	}
	for i, w := range want {
		got := st.Until.Sub(*st.OpenedAt)
		if got != w*time.Minute {
			t.Fatalf("trip %d: cooldown %v, want %v", i+1, got, w*time.Minute)
		}
		now = *st.Until
		v := Allow(cfg, st, now)
		if !v.Allowed || !v.Canary {
			t.Fatalf("trip %d: after cooldown Allow = %+v, want a canary", i+1, v)
		}
		canary := fmt.Sprintf("canary-%d", i)
		MarkCanary(st, canary, now)
		now = now.Add(10 * time.Minute)
		if tr := Record(cfg, st, fail(core.FailBootTimeout, now, canary), now); tr != "half-open→open" {
			t.Fatalf("trip %d: canary failure transition %q", i+1, tr)
		}
	}
}

func TestHalfOpenExactlyOneCanary(t *testing.T) {
	cfg := Config{}
	st := New(key, t0)
	Trip(cfg, st, t0, "operator opened the breaker")

	v := Allow(cfg, st, t0.Add(30*time.Second))
	if v.Allowed {
		t.Fatalf("open breaker allowed a spawn: %+v", v)
	}
	want := "breaker open for pool=default gpu=RTX4090 region=EU-RO-1 since 12:04, operator opened the breaker; next canary at 12:05"
	if v.Reason != want {
		t.Fatalf("reason\n got %q\nwant %q", v.Reason, want)
	}

	now := t0.Add(time.Minute)
	v = Allow(cfg, st, now)
	if !v.Allowed || !v.Canary || st.Status != core.BreakerHalfOpen {
		t.Fatalf("after cooldown: %+v status %s, want one canary in half-open", v, st.Status)
	}
	MarkCanary(st, "canary", now)
	for i := range 3 {
		if v := Allow(cfg, st, now.Add(time.Duration(i)*time.Second)); v.Allowed {
			t.Fatalf("second spawn allowed while canary in flight: %+v", v)
		}
	}
	// Another worker's outcome does not decide.
	if tr := Record(cfg, st, fail(core.FailBootTimeout, now, "other"), now); tr != "" || st.Status != core.BreakerHalfOpen {
		t.Fatalf("non-canary outcome moved the breaker: %q %s", tr, st.Status)
	}
	now = now.Add(6 * time.Minute)
	if tr := Record(cfg, st, ok(now, "canary"), now); tr != "half-open→closed" {
		t.Fatalf("canary success transition %q", tr)
	}
	if st.Status != core.BreakerClosed || st.Trips != 0 || len(st.Outcomes) != 0 || st.Consecutive != 0 || st.Until != nil {
		t.Fatalf("closed state not reset: %+v", st)
	}
	if v := Allow(cfg, st, now); !v.Allowed || v.Canary {
		t.Fatalf("closed breaker: %+v", v)
	}
}

func TestSeedReason(t *testing.T) {
	cfg := Config{}
	st := New(key, t0)
	// 1 success then 4 boot-timeouts: 4/5 ≥ 80%.
	Record(cfg, st, ok(t0.Add(-10*time.Minute), "a"), t0.Add(-10*time.Minute))
	for i := range 4 {
		at := t0.Add(time.Duration(i-3) * time.Minute)
		Record(cfg, st, fail(core.FailBootTimeout, at, "b"), at)
	}
	st.Until = new(t0.Add(2 * time.Minute))
	v := Allow(cfg, st, t0.Add(time.Minute))
	want := "breaker open for pool=default gpu=RTX4090 region=EU-RO-1 since 12:04, 4/5 recent starts failed (boot-timeout); next canary at 12:06"
	if v.Reason != want {
		t.Fatalf("reason\n got %q\nwant %q", v.Reason, want)
	}
}

func TestTripAndReset(t *testing.T) {
	cfg := Config{}
	st := New(key, t0)
	Trip(cfg, st, t0, "quota: RunPod says the balance is too low")
	if st.Status != core.BreakerOpen || !strings.Contains(st.Reason, "quota") {
		t.Fatalf("Trip: %+v", st)
	}
	Trip(cfg, st, t0, "quota again")
	if got := st.Until.Sub(t0); got != 2*time.Minute {
		t.Fatalf("second Trip cooldown %v, want 2m", got)
	}
	Reset(st, t0)
	if st.Status != core.BreakerClosed || st.Trips != 0 || st.Reason != "" || st.OpenedAt != nil {
		t.Fatalf("Reset: %+v", st)
	}
	if v := Allow(cfg, st, t0); !v.Allowed {
		t.Fatalf("after Reset: %+v", v)
	}
}

func TestOpenIgnoresOutcomes(t *testing.T) {
	cfg := Config{}
	st := New(key, t0)
	Trip(cfg, st, t0, "x")
	until := *st.Until
	if tr := Record(cfg, st, ok(t0, "late"), t0); tr != "" || st.Status != core.BreakerOpen || !st.Until.Equal(until) {
		t.Fatalf("outcome while open changed state: %q %+v", tr, st)
	}
}

func TestSummarize(t *testing.T) {
	cfg := Config{}
	st := New(key, t0)
	seq := []core.BreakerOutcome{
		ok(t0, "a"), fail(core.FailBootTimeout, t0, "b"), ok(t0, "c"),
		fail(core.FailBootTimeout, t0, "d"), ok(t0, "e"), fail(core.FailCapacity, t0, "f"),
		fail(core.FailBootTimeout, t0, "g"),
	}
	for _, o := range seq {
		Record(cfg, st, o, t0)
	}
	s := Summarize(cfg, st, t0)
	if s.Failed != 4 || s.Total != 7 || s.Status != core.BreakerClosed || s.TopClass != core.FailBootTimeout {
		t.Fatalf("summary %+v", s)
	}
	if want := "failed 4/7 in last 30m, threshold 80%, min sample 5 → not blocking"; s.String() != want {
		t.Fatalf("String()\n got %q\nwant %q", s.String(), want)
	}
	if s.Rate < 0.57 || s.Rate > 0.58 {
		t.Fatalf("rate %v", s.Rate)
	}

	Trip(cfg, st, t0, "x")
	s = Summarize(cfg, st, t0)
	if s.Status != core.BreakerOpen || s.Until == nil || s.Verdict != "blocking until 12:05:00" {
		t.Fatalf("open summary %+v", s)
	}
	// Summarize does not mutate.
	if st.Status != core.BreakerOpen || len(st.Outcomes) != 7 {
		t.Fatalf("Summarize mutated the state: %+v", st)
	}
}

func TestCountsAsStartFailure(t *testing.T) {
	ready := t0
	grace := 5 * time.Minute
	tests := []struct {
		class   core.FailureClass
		readyAt *time.Time
		failed  time.Time
		want    bool
	}{
		{core.FailCapacity, nil, t0, true},
		{core.FailProvisionTimeout, nil, t0, true},
		{core.FailBootTimeout, nil, t0, true},
		{core.FailGPUMissing, nil, t0, true},
		{core.FailAgentExit, nil, t0, true},
		{core.FailAgentExit, &ready, t0.Add(time.Minute), false},
		{core.FailHeartbeatLost, nil, t0, true},
		{core.FailHeartbeatLost, &ready, t0.Add(4 * time.Minute), true},
		{core.FailHeartbeatLost, &ready, t0.Add(5 * time.Minute), true},
		{core.FailHeartbeatLost, &ready, t0.Add(6 * time.Minute), false},
		{core.FailQuota, nil, t0, false},
		{core.FailInvalidRequest, nil, t0, false},
		{core.FailVanished, &ready, t0.Add(time.Minute), false},
		{core.FailPreempted, &ready, t0.Add(time.Minute), false},
		{core.FailStuckTask, &ready, t0.Add(time.Minute), false},
		{core.FailGPUFault, &ready, t0.Add(time.Minute), false},
		{core.FailProvider, nil, t0, false},
		{"", &ready, t0.Add(time.Hour), false}, // scale-down, drain, operator
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/ready=%v/after=%v", tt.class, tt.readyAt != nil, tt.failed.Sub(t0))
		t.Run(name, func(t *testing.T) {
			if got := CountsAsStartFailure(tt.class, tt.readyAt, tt.failed, grace); got != tt.want {
				t.Fatalf("CountsAsStartFailure = %v, want %v", got, tt.want)
			}
		})
	}
	if !TripsAtOnce(core.FailQuota) || !TripsAtOnce(core.FailInvalidRequest) || TripsAtOnce(core.FailCapacity) {
		t.Fatal("TripsAtOnce")
	}
}

func TestKeyLabel(t *testing.T) {
	if got := KeyLabel("default/NVIDIA L40S/EU-SE-1"); got != `pool=default gpu="NVIDIA L40S" region=EU-SE-1` {
		t.Fatalf("KeyLabel = %q", got)
	}
	if got := KeyLabel("odd"); got != "odd" {
		t.Fatalf("KeyLabel = %q", got)
	}
}
