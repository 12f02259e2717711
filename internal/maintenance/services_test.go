package maintenance

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/google/uuid"
)

// backends runs fn against a fresh SQLite store and a fresh PostgreSQL
// schema (DROVER_TEST_DATABASE_URL; see pgtest.URL).
func backends(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "m.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		if _, err := st.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		fn(t, st)
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		t.Parallel()
		fn(t, pgtest.Open(t, 0))
	})
}

// rig is a started group of the leader's services on a fake clock, with
// the passes and wake-ups it made.
type rig struct {
	t      *testing.T
	st     store.Store
	clock  *core.FakeClock
	q      *queue.Service
	g      *Group
	passes chan string
	errs   chan error

	mu    sync.Mutex
	wakes []string
	reps  []queue.MaintainReport
}

func newRig(t *testing.T, st store.Store, qcfg queue.Config, mod func(*Config)) *rig {
	t.Helper()
	r := &rig{t: t, st: st, clock: core.NewFakeClock(storetest.Base), passes: make(chan string, 100), errs: make(chan error, 100)}
	r.q = queue.New(st, r.clock, qcfg, nil)
	cfg := Config{Queue: r.q, Store: st, Clock: r.clock, Retention: time.Hour, Logger: slog.New(slog.DiscardHandler),
		Wake: func(reason string) { r.mu.Lock(); r.wakes = append(r.wakes, reason); r.mu.Unlock() },
		OnReport: func(_ context.Context, rep queue.MaintainReport) {
			r.mu.Lock()
			r.reps = append(r.reps, rep)
			r.mu.Unlock()
		},
		OnPass: func(name string, err error) {
			if err != nil {
				r.errs <- err
			}
			r.passes <- name
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.g = g
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	// Every service passes once at start.
	r.await(slices.Collect(func(yield func(string) bool) {
		for _, s := range g.Services() {
			if !yield(s.Name()) {
				return
			}
		}
	})...)
	return r
}

// await waits until each named service has passed once more.
func (r *rig) await(names ...string) {
	r.t.Helper()
	want := map[string]int{}
	for _, n := range names {
		want[n]++
	}
	for len(want) > 0 {
		select {
		case n := <-r.passes:
			if want[n]--; want[n] <= 0 {
				delete(want, n)
			}
		case err := <-r.errs:
			r.t.Fatalf("pass failed: %v", err)
		case <-r.t.Context().Done():
			r.t.Fatalf("services %v never passed", want)
		}
	}
}

// advance moves the clock and kicks the services.
func (r *rig) advance(d time.Duration) {
	r.clock.Advance(d)
	r.g.Kick()
}

func (r *rig) task(id uuid.UUID) *core.Task {
	r.t.Helper()
	tk, err := r.st.TaskGet(r.t.Context(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return tk
}

func (r *rig) submitClaim(req queue.SubmitRequest) *core.Task {
	r.t.Helper()
	res, err := r.q.Submit(r.t.Context(), []queue.SubmitRequest{req})
	if err != nil {
		r.t.Fatal(err)
	}
	w := storetest.InsertWorker(r.t, r.st, core.DefaultPool, core.WorkerReady)
	got, err := r.q.Claim(r.t.Context(), w.ID, 1)
	if err != nil || len(got) != 1 {
		r.t.Fatalf("claim: %v %v", got, err)
	}
	return r.task(res[0].Task.ID)
}

func TestLeaseService(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		r := newRig(t, st, queue.Config{LeaseDuration: 25 * time.Second}, func(c *Config) { c.LeaseGrace = 4 * time.Second })
		tk := r.submitClaim(queue.SubmitRequest{Type: "a"})
		claims := r.q.Notify()
		// Expired, but within the grace the control loop has: kept.
		r.advance(28 * time.Second)
		r.await(Leases)
		if got := r.task(tk.ID); got.State != core.TaskRunning {
			t.Fatalf("lease within its grace: task %s", got.State)
		}
		r.advance(2 * time.Second)
		r.await(Leases)
		got := r.task(tk.ID)
		if got.State != core.TaskQueued || got.Lost != 1 {
			t.Fatalf("expired lease: task %s lost %d, want queued lost 1", got.State, got.Lost)
		}
		select {
		case <-claims:
		default:
			t.Fatal("the requeue did not wake the parked claims")
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if !slices.Contains(r.wakes, "maintenance") || len(r.reps) != 1 || len(r.reps[0].Requeued) != 1 {
			t.Fatalf("wakes %v, reports %+v: want the loop woken and one report", r.wakes, r.reps)
		}
	})
}

func TestTimeoutService(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		r := newRig(t, st, queue.Config{LeaseDuration: time.Hour, StallTimeouts: map[string]time.Duration{"quiet": 30 * time.Second}}, nil)
		slow := r.submitClaim(queue.SubmitRequest{Type: "a", Timeout: ptr(time.Minute)})
		quiet := r.submitClaim(queue.SubmitRequest{Type: "quiet"})
		r.advance(31 * time.Second) // past the interval too
		r.await(Timeouts)
		if got := r.task(quiet.ID); got.State != core.TaskQueued || got.Error != core.ReasonStalled {
			t.Fatalf("quiet task %s %q, want queued, stalled", got.State, got.Error)
		}
		if got := r.task(slow.ID); got.State != core.TaskRunning {
			t.Fatalf("task within its timeout: %s", got.State)
		}
		r.advance(30 * time.Second)
		r.await(Timeouts)
		if got := r.task(slow.ID); got.State != core.TaskQueued || got.Error != core.ReasonTimeout || got.Failures != 1 {
			t.Fatalf("timed-out task %s %q failures %d", got.State, got.Error, got.Failures)
		}
	})
}

func TestQueueTTLService(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		r := newRig(t, st, queue.Config{QueueTTL: time.Hour}, nil)
		res, err := r.q.Submit(t.Context(), []queue.SubmitRequest{{Type: "a"}})
		if err != nil {
			t.Fatal(err)
		}
		r.advance(time.Hour + time.Second)
		r.await(QueueTTL)
		if got := r.task(res[0].Task.ID); got.State != core.TaskFailed || got.Error != core.ReasonExpired {
			t.Fatalf("old queued task %s %q", got.State, got.Error)
		}
	})
}

func TestRetentionService(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		r := newRig(t, st, queue.Config{}, nil)
		ctx := t.Context()
		now := r.clock.Now()
		if err := st.EventInsertMany(ctx, []*core.Event{{Time: now, Kind: core.EventTick, Message: "soon old"}}); err != nil {
			t.Fatal(err)
		}
		if err := st.SampleInsertMany(ctx, []*store.Sample{{Time: now, Pool: store.SampleFleetPool}}); err != nil {
			t.Fatal(err)
		}
		// Older than retention now, and past the service's interval.
		r.advance(time.Hour + time.Second)
		r.await(Retention)
		evs, err := st.EventList(ctx, &store.EventListParams{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Message == "soon old" {
				t.Fatal("event older than retention kept")
			}
		}
		ss, err := st.SampleList(ctx, &store.SampleListParams{Since: now.Add(-time.Hour), Until: r.clock.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if len(ss) != 0 {
			t.Fatalf("%d samples older than retention kept", len(ss))
		}
	})
}

func TestWorkerService(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		r := newRig(t, st, queue.Config{}, nil)
		gone := storetest.NewWorker(core.DefaultPool, core.WorkerTerminated)
		gone.StateChangedAt = r.clock.Now()
		if err := st.WorkerInsert(t.Context(), gone); err != nil {
			t.Fatal(err)
		}
		live := storetest.InsertWorker(t, st, core.DefaultPool, core.WorkerReady)
		r.advance(time.Hour + time.Second)
		r.await(Workers)
		if _, err := st.WorkerGet(t.Context(), gone.ID); !errors.Is(err, core.ErrNotFound) {
			t.Fatalf("terminated row older than retention: err = %v, want deleted", err)
		}
		if _, err := st.WorkerGet(t.Context(), live.ID); err != nil {
			t.Fatalf("live worker: %v", err)
		}
	})
}

func TestPlannerStatsAndOutputsServices(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		var mu sync.Mutex
		sweeps := 0
		r := newRig(t, st, queue.Config{}, func(c *Config) {
			c.SweepOutputs = func(context.Context) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				sweeps++
				if sweeps == 1 {
					return sweepBatch, nil // a full batch: sweep again at once
				}
				return 3, nil
			}
		})
		mu.Lock()
		if sweeps != 2 {
			t.Fatalf("outputs swept %d times in the first pass, want 2 (a full batch, then the rest)", sweeps)
		}
		mu.Unlock()
		if _, err := r.q.Submit(t.Context(), []queue.SubmitRequest{{Type: "a", Params: json.RawMessage(`{}`)}}); err != nil {
			t.Fatal(err)
		}
		r.advance(DefaultAnalyzeInterval)
		r.await(PlannerStats, Outputs)
	})
}

// A Gate that refuses (this replica does not lead) keeps every pass of a
// started service from running; RunDue, for callers that lead by
// themselves, is not gated.
func TestGateHoldsPasses(t *testing.T) {
	clock := core.NewFakeClock(t0)
	var mu sync.Mutex
	leading := false
	passes := make(chan string, 10)
	fence := store.Fence{LeaderID: "me", Term: 7}
	var seen []store.Fence
	svc, err := NewService(ServiceConfig{Name: "x", Interval: time.Minute, Clock: clock,
		Gate: func(ctx context.Context) (context.Context, bool) {
			mu.Lock()
			defer mu.Unlock()
			return store.WithFence(ctx, fence), leading
		},
		Pass: func(ctx context.Context) error {
			f, _ := store.FenceFrom(ctx)
			mu.Lock()
			seen = append(seen, f)
			mu.Unlock()
			passes <- "x"
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	svc.Kick()
	clock.Advance(time.Hour)
	mu.Lock()
	leading = true
	mu.Unlock()
	svc.Kick()
	<-passes
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != fence {
		t.Fatalf("passes saw fences %v, want one pass under %v", seen, fence)
	}
}

func ptr[T any](v T) *T { return &v }
