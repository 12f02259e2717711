package queue

import (
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store/storetest"
)

// A running task of a type with a stall_timeout fails its attempt
// (retryable, "stalled") once it has reported no progress and written no log
// line for that long; progress and log lines each keep it alive, and types
// without a stall_timeout are never touched.
func TestMaintainFailsStalledAttempts(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{LeaseDuration: time.Hour, StallTimeouts: map[string]time.Duration{"slow": time.Minute}})
	ctx := t.Context()
	w := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerReady)
	slow := mustSubmit(t, s, SubmitRequest{Type: "slow"})[0]
	other := mustSubmit(t, s, SubmitRequest{Type: "other"})[0]
	claimed := mustClaim(t, s, w.ID, 2)
	if len(claimed) != 2 {
		t.Fatalf("claimed %d tasks", len(claimed))
	}
	var lease core.Lease
	for _, c := range claimed {
		if c.ID == slow.ID {
			lease = core.Lease{TaskID: c.ID, Token: *c.LeaseToken}
		}
	}
	maintain := func(what string, want int) []*core.Task {
		t.Helper()
		rep, err := s.Maintain(ctx)
		if err != nil {
			t.Fatalf("%s: Maintain: %v", what, err)
		}
		if len(rep.Stalled) != want {
			t.Fatalf("%s: %d stalled, want %d", what, len(rep.Stalled), want)
		}
		return rep.Stalled
	}
	b.clock.Advance(50 * time.Second)
	p := 0.5
	if err := s.Progress(ctx, w.ID, lease, &p, "half"); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(50 * time.Second)
	maintain("50s after progress", 0)
	if err := s.Logs(ctx, w.ID, []*core.LogLine{{TaskID: slow.ID.String(), Stream: "stdout", Line: "still here"}}); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(59 * time.Second)
	maintain("59s after a log line", 0)
	b.clock.Advance(time.Second)
	got := maintain("60s quiet", 1)[0]
	if got.ID != slow.ID || got.State != core.TaskQueued || got.Error != core.ReasonStalled || got.Failures != 1 {
		t.Fatalf("stalled task: id %s state %s error %q failures %d", got.ID, got.State, got.Error, got.Failures)
	}
	if o, err := s.Get(ctx, other.ID); err != nil || o.State != core.TaskRunning {
		t.Fatalf("task without stall_timeout: %v %v", o.State, err)
	}
	// The stalled attempt's lease is gone: its late completion is refused.
	if err := s.Complete(ctx, w.ID, lease, nil); err == nil {
		t.Fatal("completion of a stalled attempt was accepted")
	}
	if len(events(t, b.st, core.EventTaskRetried)) != 1 {
		t.Fatal("no task.retried event for the stalled attempt")
	}
}

func TestStalled(t *testing.T) {
	t.Parallel()
	t0 := storetest.Base
	start := t0
	tk := &core.Task{State: core.TaskRunning, StartedAt: &start, UpdatedAt: t0}
	for _, c := range []struct {
		name    string
		lastLog time.Time
		d       time.Duration
		now     time.Time
		want    bool
	}{
		{"quiet past timeout", time.Time{}, time.Minute, t0.Add(time.Minute), true},
		{"quiet within timeout", time.Time{}, time.Minute, t0.Add(59 * time.Second), false},
		{"recent log line", t0.Add(30 * time.Second), time.Minute, t0.Add(80 * time.Second), false},
		{"no timeout", time.Time{}, 0, t0.Add(time.Hour), false},
	} {
		if got := Stalled(tk, c.lastLog, c.d, c.now); got != c.want {
			t.Errorf("%s: Stalled = %v, want %v", c.name, got, c.want)
		}
	}
	queued := *tk
	queued.State = core.TaskQueued
	if Stalled(&queued, time.Time{}, time.Minute, t0.Add(time.Hour)) {
		t.Error("a queued task counted as stalled")
	}
}
