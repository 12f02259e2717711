package queue

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/google/uuid"
)

// countingStore is the real store with call counters on the methods the
// heartbeat group commit must batch.
type countingStore struct {
	store.Store
	renews, beats, lists atomic.Int32
}

func (c *countingStore) TaskLeaseRenew(ctx context.Context, p *store.TaskLeaseRenewParams) ([]core.Lease, error) {
	c.renews.Add(1)
	return c.Store.TaskLeaseRenew(ctx, p)
}

func (c *countingStore) WorkerHeartbeat(ctx context.Context, p []store.WorkerHeartbeatParams) error {
	c.beats.Add(1)
	return c.Store.WorkerHeartbeat(ctx, p)
}

func (c *countingStore) WorkerList(ctx context.Context, p *store.WorkerListParams) ([]*core.Worker, error) {
	c.lists.Add(1)
	return c.Store.WorkerList(ctx, p)
}

type testBundle struct {
	st    *countingStore
	clock *core.FakeClock
}

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "queue.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st
}

func setup(t *testing.T, cfg Config) (*Service, *testBundle) {
	t.Helper()
	b := &testBundle{st: &countingStore{Store: openSQLite(t)}, clock: core.NewFakeClock(storetest.Base)}
	s := New(b.st, b.clock, cfg, nil)
	s.rnd = func() float64 { return 0 } // backoff = base·2^(n-1) / 2 exactly
	return s, b
}

func mustSubmit(t *testing.T, s *Service, reqs ...SubmitRequest) []*core.Task {
	t.Helper()
	res, err := s.Submit(t.Context(), reqs)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	out := make([]*core.Task, len(res))
	for i, r := range res {
		out[i] = r.Task
	}
	return out
}

func mustClaim(t *testing.T, s *Service, w uuid.UUID, max int) []*core.Task {
	t.Helper()
	ts, err := s.Claim(t.Context(), w, max)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return ts
}

func leaseOf(t *core.Task) core.Lease { return core.Lease{TaskID: t.ID, Token: *t.LeaseToken} }

func taskCount(t *testing.T, st store.Store) int {
	t.Helper()
	counts, err := st.TaskCountByState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

func events(t *testing.T, st store.Store, kind core.EventKind) []*core.Event {
	t.Helper()
	evs, err := st.EventList(t.Context(), &store.EventListParams{Kinds: []core.EventKind{kind}})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func wantCode(t *testing.T, err error, code, field, msg string) {
	t.Helper()
	e, ok := errors.AsType[*core.Error](err)
	if !ok {
		t.Fatalf("error %v is not a *core.Error", err)
	}
	if e.Code != code || e.Field != field || !strings.Contains(e.Message, msg) {
		t.Fatalf("got %s %q %q; want %s %q containing %q", e.Code, e.Field, e.Message, code, field, msg)
	}
}

func TestSubmitAgainstStore(t *testing.T) {
	t.Parallel()

	t.Run("InvalidChangesNothing", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, Config{})
		failed := mustSubmit(t, s, SubmitRequest{Type: "a"})[0]
		if _, err := s.Cancel(t.Context(), failed.ID); err != nil {
			t.Fatal(err)
		}
		live := mustSubmit(t, s, SubmitRequest{Type: "live"})[0]
		good := SubmitRequest{Type: "ok"}
		unknown := uuid.NewString()
		cases := []struct {
			name       string
			reqs       []SubmitRequest
			code       string
			field, msg string
		}{
			{"UnknownDependency", []SubmitRequest{{Type: "x", DependsOn: []string{uuid.NewString()}}}, core.EINVALID, "depends_on[0]", "unknown task id"},
			{"UnknownDependencyInBatch", []SubmitRequest{good, {Type: "x", DependsOn: []string{"#0", live.ID.String(), unknown}}}, core.EINVALID, "tasks[1].depends_on[2]", "unknown task id " + unknown},
			{"CancelledDependency", []SubmitRequest{{Type: "x", DependsOn: []string{failed.ID.String()}}}, core.EINVALID, "depends_on[0]", "is cancelled; a task depending on it could never run"},
			{"LastItemInvalid", []SubmitRequest{good, good, {Type: "x", Priority: ptr(2000)}}, core.EINVALID, "tasks[2].priority", "must be between -1000 and 1000"},
			{"ParamsTooLarge", []SubmitRequest{good, {Type: "x", Params: json.RawMessage(`"` + strings.Repeat("p", core.MaxParamsBytes) + `"`)}}, core.ETOOLARGE, "tasks[1].params", "the limit is 1,048,576 (1 MiB)"},
		}
		before := taskCount(t, b.st)
		for _, c := range cases {
			_, err := s.Submit(t.Context(), c.reqs)
			if err == nil {
				t.Fatalf("%s: accepted", c.name)
			}
			wantCode(t, err, c.code, c.field, c.msg)
			if n := taskCount(t, b.st); n != before {
				t.Fatalf("%s: task count %d → %d; a rejected submit must change nothing", c.name, before, n)
			}
		}
	})

	t.Run("BatchDependenciesAndNotify", func(t *testing.T) {
		t.Parallel()
		s, _ := setup(t, Config{})
		var woke []string
		s.SetWaker(func(r string) { woke = append(woke, r) })
		ch := s.Notify()
		ts := mustSubmit(t, s, SubmitRequest{Type: "a"}, SubmitRequest{Type: "b", DependsOn: []string{"#0"}})
		select {
		case <-ch:
		default:
			t.Fatal("Notify channel not closed by Submit")
		}
		if len(woke) != 1 || woke[0] != "submit" {
			t.Fatalf("waker calls = %v, want [submit]", woke)
		}
		got, err := s.Get(t.Context(), ts[1].ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.DepsPending != 1 || len(got.DependsOn) != 1 || got.DependsOn[0] != ts[0].ID {
			t.Fatalf("dependent: deps_pending=%d depends_on=%v", got.DepsPending, got.DependsOn)
		}
	})
}

func TestClaimCompleteFail(t *testing.T) {
	t.Parallel()

	t.Run("CompleteOnceThenLeaseLost", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, Config{})
		w := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerReady)
		task := mustSubmit(t, s, SubmitRequest{Type: "a"})[0]
		got := mustClaim(t, s, w.ID, 5)
		if len(got) != 1 || got[0].ID != task.ID || got[0].State != core.TaskRunning {
			t.Fatalf("claimed %v", got)
		}
		if want := b.clock.Now().Add(core.DefaultLeaseDuration); !got[0].LeaseExpiresAt.Equal(want) {
			t.Fatalf("lease expires %v, want %v", got[0].LeaseExpiresAt, want)
		}
		if err := s.Complete(t.Context(), w.ID, leaseOf(got[0]), json.RawMessage(`{"ok":true}`)); err != nil {
			t.Fatal(err)
		}
		err := s.Complete(t.Context(), w.ID, leaseOf(got[0]), nil)
		if !errors.Is(err, core.ErrLeaseLost) {
			t.Fatalf("second Complete: %v, want ErrLeaseLost", err)
		}
		final, _ := s.Get(t.Context(), task.ID)
		if final.State != core.TaskSucceeded || string(final.Result) != `{"ok":true}` {
			t.Fatalf("task %s result %s", final.State, final.Result)
		}
		if evs := events(t, b.st, core.EventTaskSucceeded); len(evs) != 0 {
			t.Fatalf("a success wrote %d events; successes are not evented", len(evs))
		}
	})

	t.Run("InvalidResultChangesNothing", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, Config{})
		w := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerReady)
		mustSubmit(t, s, SubmitRequest{Type: "a"})
		claimed := mustClaim(t, s, w.ID, 1)[0]
		big := json.RawMessage(`"` + strings.Repeat("r", core.MaxResultBytes) + `"`)
		wantCode(t, s.Complete(t.Context(), w.ID, leaseOf(claimed), big), core.ETOOLARGE, "result", "the limit is 1,048,576 (1 MiB)")
		wantCode(t, s.Complete(t.Context(), w.ID, leaseOf(claimed), json.RawMessage(`42`)), core.EINVALID, "result", "JSON object")
		_, err := s.CompleteMany(t.Context(), w.ID, []store.TaskCompletion{{Lease: leaseOf(claimed)}, {Lease: leaseOf(claimed), Result: json.RawMessage(`[]`)}})
		wantCode(t, err, core.EINVALID, "items[1].result", "JSON object")
		wantCode(t, s.Progress(t.Context(), w.ID, leaseOf(claimed), ptr(1.5), ""), core.EINVALID, "progress", "between 0 and 1")
		wantCode(t, s.Progress(t.Context(), w.ID, leaseOf(claimed), nil, strings.Repeat("m", 5000)), core.EINVALID, "message", "the limit is 4,096")
		_, err = s.Claim(t.Context(), w.ID, 0)
		wantCode(t, err, core.EINVALID, "max", "between 1 and 1000")
		now, _ := s.Get(t.Context(), claimed.ID)
		if now.State != core.TaskRunning || now.Progress != nil {
			t.Fatalf("task changed: %s progress %v", now.State, now.Progress)
		}
		if err := s.Progress(t.Context(), w.ID, leaseOf(claimed), ptr(0.5), "half"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("FailRetriesWithBackoffThenFails", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, Config{BackoffBase: 10 * time.Second})
		w := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerReady)
		task := mustSubmit(t, s, SubmitRequest{Type: "a", MaxAttempts: ptr(2)})[0]
		ch := s.Notify()
		c1 := mustClaim(t, s, w.ID, 1)[0]
		got, err := s.Fail(t.Context(), w.ID, leaseOf(c1), "boom\nstack", true)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != core.TaskQueued || got.Failures != 1 {
			t.Fatalf("after first failure: %s failures=%d", got.State, got.Failures)
		}
		if want := b.clock.Now().Add(5 * time.Second); !got.RunAfter.Equal(want) {
			t.Fatalf("run_after %v, want %v (backoff 10s jittered to its lower bound)", got.RunAfter, want)
		}
		select {
		case <-ch:
		default:
			t.Fatal("a retry did not notify claimers")
		}
		if len(mustClaim(t, s, w.ID, 1)) != 0 {
			t.Fatal("claimed a task before its backoff elapsed")
		}
		if _, err := s.Fail(t.Context(), w.ID, leaseOf(c1), "again", true); !errors.Is(err, core.ErrLeaseLost) {
			t.Fatalf("Fail with a stale lease: %v", err)
		}
		b.clock.Advance(5 * time.Second)
		c2 := mustClaim(t, s, w.ID, 1)[0]
		got, err = s.Fail(t.Context(), w.ID, leaseOf(c2), "boom", true)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != core.TaskFailed {
			t.Fatalf("after max_attempts failures: %s", got.State)
		}
		retried, failed := events(t, b.st, core.EventTaskRetried), events(t, b.st, core.EventTaskFailed)
		if len(retried) != 1 || len(failed) != 1 || retried[0].TaskID != task.ID.String() || !strings.Contains(retried[0].Message, "attempt 1 failed: boom") {
			t.Fatalf("events: retried=%v failed=%v", retried, failed)
		}
		if strings.Contains(retried[0].Message, "stack") {
			t.Fatalf("event message carries the whole error: %q", retried[0].Message)
		}
	})

	t.Run("CancelAndRetry", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, Config{})
		task := mustSubmit(t, s, SubmitRequest{Type: "a"})[0]
		if c, err := s.Cancel(t.Context(), task.ID); err != nil || c.State != core.TaskCancelled {
			t.Fatalf("Cancel: %v %v", c, err)
		}
		if _, err := s.Cancel(t.Context(), task.ID); !errors.Is(err, core.ErrConflict) {
			t.Fatalf("second Cancel: %v, want ErrConflict", err)
		}
		if r, err := s.Retry(t.Context(), task.ID); err != nil || r.State != core.TaskQueued {
			t.Fatalf("Retry: %v %v", r, err)
		}
		if len(events(t, b.st, core.EventTaskCancelled)) != 1 || len(events(t, b.st, core.EventTaskRetried)) != 1 {
			t.Fatal("cancel/retry events missing")
		}
	})
}

func TestRegister(t *testing.T) {
	t.Parallel()
	cfg := Config{RequiresGPU: func(pool string) bool { return pool == "gpu" }}

	t.Run("RecordsFacts", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, cfg)
		w := storetest.InsertWorker(t, b.st, "gpu", core.WorkerBooting)
		var woke []string
		s.SetWaker(func(r string) { woke = append(woke, r) })
		got, err := s.Register(t.Context(), w.ID, RegisterInfo{InstanceID: "pod-1", AgentVersion: "1.2.3", GPUs: []core.GPU{{Name: "A100", MemoryMiB: 81920}}})
		if err != nil {
			t.Fatal(err)
		}
		if got.State != core.WorkerBooting || got.AgentVersion != "1.2.3" || got.InstanceID != "pod-1" || len(got.GPUs) != 1 || got.LastHeartbeatAt == nil {
			t.Fatalf("registered worker %+v", got)
		}
		if len(woke) != 1 || woke[0] != "register" {
			t.Fatalf("waker calls %v", woke)
		}
	})

	// The worker is failed by the orchestrator's next tick
	// (orchestrator TestGPUMissingAppliedByTick); the queue only requests it.
	t.Run("GPUMissingRequestsFailure", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, cfg)
		w := storetest.InsertWorker(t, b.st, "gpu", core.WorkerBooting)
		_, err := s.Register(t.Context(), w.ID, RegisterInfo{AgentVersion: "1"})
		wantCode(t, err, core.EINVALID, "gpus", "gpu-missing: pool gpu requires GPUs and the agent found none")
		reqs, err := b.st.WorkerRequestList(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(reqs) != 1 || reqs[0].WorkerID != w.ID || reqs[0].Action != store.WorkerActionFail || reqs[0].Failure != core.FailGPUMissing {
			t.Fatalf("requests %+v, want one fail/gpu-missing for %s", reqs, w.ID)
		}
		got, _ := b.st.WorkerGet(t.Context(), w.ID)
		if got.State != core.WorkerBooting {
			t.Fatalf("worker state %s written by the queue, want booting (the orchestrator writes it)", got.State)
		}
	})

	t.Run("WrongStateChangesNothing", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, cfg)
		w := storetest.InsertWorker(t, b.st, "cpu", core.WorkerDraining)
		_, err := s.Register(t.Context(), w.ID, RegisterInfo{AgentVersion: "9"})
		wantCode(t, err, core.ECONFLICT, "", "worker is draining")
		got, _ := b.st.WorkerGet(t.Context(), w.ID)
		if got.AgentVersion != "" || got.LastHeartbeatAt != nil {
			t.Fatalf("worker changed: %+v", got)
		}
		if _, err := s.Register(t.Context(), uuid.New(), RegisterInfo{}); !errors.Is(err, core.ErrNotFound) {
			t.Fatalf("unknown worker: %v", err)
		}
	})
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()

	t.Run("RepliesPerWorkerState", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, Config{})
		ready := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerReady)
		draining := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerDraining)
		failed := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerFailed)
		tasks := mustSubmit(t, s, SubmitRequest{Type: "a"}, SubmitRequest{Type: "b"})
		held := mustClaim(t, s, ready.ID, 2)
		if len(held) != 2 {
			t.Fatalf("claimed %d", len(held))
		}
		if _, err := s.Cancel(t.Context(), tasks[1].ID); err != nil {
			t.Fatal(err)
		}
		b.clock.Advance(10 * time.Second)
		rep, err := s.Heartbeat(t.Context(), ready.ID, HeartbeatInfo{Leases: []core.Lease{leaseOf(held[0]), leaseOf(held[1])}, Metrics: json.RawMessage(`{"gpu":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Drain || rep.Stop || len(rep.Lost) != 1 || rep.Lost[0].TaskID != tasks[1].ID {
			t.Fatalf("ready reply %+v, want the cancelled task's lease lost", rep)
		}
		renewed, _ := s.Get(t.Context(), held[0].ID)
		if want := b.clock.Now().Add(core.DefaultLeaseDuration); !renewed.LeaseExpiresAt.Equal(want) {
			t.Fatalf("lease expires %v, want %v", renewed.LeaseExpiresAt, want)
		}
		w, _ := b.st.WorkerGet(t.Context(), ready.ID)
		if w.LastHeartbeatAt == nil || !w.LastHeartbeatAt.Equal(b.clock.Now()) {
			t.Fatalf("last heartbeat %v", w.LastHeartbeatAt)
		}
		if rep, err := s.Heartbeat(t.Context(), draining.ID, HeartbeatInfo{}); err != nil || !rep.Drain || rep.Stop {
			t.Fatalf("draining reply %+v %v", rep, err)
		}
		if rep, err := s.Heartbeat(t.Context(), failed.ID, HeartbeatInfo{}); err != nil || !rep.Stop {
			t.Fatalf("failed reply %+v %v", rep, err)
		}
		if _, err := s.Heartbeat(t.Context(), uuid.New(), HeartbeatInfo{}); !errors.Is(err, core.ErrNotFound) {
			t.Fatalf("unknown worker: %v", err)
		}
	})

	t.Run("GroupCommit", func(t *testing.T) {
		t.Parallel()
		// The window is an hour, so only the 512-pending trigger and Stop
		// can flush during this test.
		s, b := setup(t, Config{HeartbeatFlush: time.Hour})
		workers := make([]*core.Worker, 8)
		for i := range workers {
			workers[i] = storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerReady)
		}
		workers[7] = storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerDraining)
		mustSubmit(t, s, SubmitRequest{Type: "a"})
		held := mustClaim(t, s, workers[0].ID, 1)[0]
		s.Start(t.Context())
		defer s.Stop()

		var wg sync.WaitGroup
		replies := make([]HeartbeatReply, hbFullBatch)
		errs := make([]error, hbFullBatch)
		beat := func(i int) {
			defer wg.Done()
			info := HeartbeatInfo{}
			if i%8 == 0 {
				info.Leases = []core.Lease{leaseOf(held)}
			}
			replies[i], errs[i] = s.Heartbeat(context.Background(), workers[i%8].ID, info)
		}
		wg.Add(hbFullBatch)
		for i := range hbFullBatch - 1 {
			go beat(i)
		}
		waitPending(s, hbFullBatch-1)
		if n := b.st.renews.Load() + b.st.beats.Load(); n != 0 {
			t.Fatalf("%d store writes before the batch was full or the window ended", n)
		}
		go beat(hbFullBatch - 1)
		wg.Wait()
		if r, h, l := b.st.renews.Load(), b.st.beats.Load(), b.st.lists.Load(); r != 1 || h != 1 || l != 1 {
			t.Fatalf("512 heartbeats took %d renews, %d heartbeat writes, %d worker reads; want 1 each", r, h, l)
		}
		for i := range replies {
			if errs[i] != nil {
				t.Fatalf("heartbeat %d: %v", i, errs[i])
			}
			if wantDrain := i%8 == 7; replies[i].Drain != wantDrain || len(replies[i].Lost) != 0 {
				t.Fatalf("heartbeat %d reply %+v", i, replies[i])
			}
		}

		// Stop commits what is pending.
		wg.Add(2)
		go beat(1)
		go beat(2)
		waitPending(s, 2)
		s.Stop()
		wg.Wait()
		if errs[1] != nil || errs[2] != nil || b.st.beats.Load() != 2 {
			t.Fatalf("after Stop: errs %v %v, heartbeat writes %d", errs[1], errs[2], b.st.beats.Load())
		}
	})
}

// waitPending yields until n heartbeats wait for the group commit.
func waitPending(s *Service, n int) {
	for {
		s.mu.Lock()
		got := len(s.pending)
		s.mu.Unlock()
		if got >= n {
			return
		}
		runtime.Gosched()
	}
}

func TestMaintain(t *testing.T) {
	t.Parallel()

	t.Run("RequeuesExpiredLeases", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, Config{LeaseDuration: 25 * time.Second})
		w := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerReady)
		task := mustSubmit(t, s, SubmitRequest{Type: "a", MaxLost: ptr(2)})[0]
		mustClaim(t, s, w.ID, 1)
		b.clock.Advance(24 * time.Second)
		if rep, err := s.Maintain(t.Context()); err != nil || len(rep.Requeued) != 0 {
			t.Fatalf("Maintain before expiry: %+v %v", rep, err)
		}
		ch := s.Notify()
		b.clock.Advance(2 * time.Second)
		rep, err := s.Maintain(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Requeued) != 1 || rep.Requeued[0].ID != task.ID || rep.Requeued[0].State != core.TaskQueued || rep.Requeued[0].Lost != 1 {
			t.Fatalf("requeued %+v", rep.Requeued)
		}
		select {
		case <-ch:
		default:
			t.Fatal("requeue did not notify claimers")
		}
		// Second loss reaches max_lost: the task fails instead of looping.
		mustClaim(t, s, w.ID, 1)
		b.clock.Advance(26 * time.Second)
		rep, err = s.Maintain(t.Context())
		if err != nil || len(rep.Requeued) != 1 || rep.Requeued[0].State != core.TaskFailed {
			t.Fatalf("second loss: %+v %v", rep.Requeued, err)
		}
		if len(events(t, b.st, core.EventTaskRequeued)) != 1 || len(events(t, b.st, core.EventTaskFailed)) != 1 {
			t.Fatal("requeue/fail events missing")
		}
	})

	t.Run("TimesOutAttempts", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, Config{LeaseDuration: time.Hour})
		w := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerReady)
		mustSubmit(t, s, SubmitRequest{Type: "a", Timeout: ptr(time.Minute)})
		mustClaim(t, s, w.ID, 1)
		b.clock.Advance(61 * time.Second)
		rep, err := s.Maintain(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.TimedOut) != 1 || rep.TimedOut[0].State != core.TaskQueued || rep.TimedOut[0].Failures != 1 {
			t.Fatalf("timed out %+v", rep.TimedOut)
		}
		if evs := events(t, b.st, core.EventTaskRetried); len(evs) != 1 || !strings.Contains(evs[0].Message, "exceeded its timeout of 1m0s") {
			t.Fatalf("retried events %v", evs)
		}
	})

	t.Run("ExpiresOldQueuedTasks", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t, Config{QueueTTL: 24 * time.Hour})
		old := mustSubmit(t, s, SubmitRequest{Type: "a"})[0]
		b.clock.Advance(23 * time.Hour)
		young := mustSubmit(t, s, SubmitRequest{Type: "a"})[0]
		b.clock.Advance(time.Hour + time.Second)
		rep, err := s.Maintain(t.Context())
		if err != nil || rep.Expired != 1 {
			t.Fatalf("Maintain: %+v %v", rep, err)
		}
		o, _ := s.Get(t.Context(), old.ID)
		y, _ := s.Get(t.Context(), young.ID)
		if o.State != core.TaskFailed || o.Error != core.ReasonExpired || y.State != core.TaskQueued {
			t.Fatalf("old %s %q, young %s", o.State, o.Error, y.State)
		}
		if len(events(t, b.st, core.EventTaskExpired)) != 1 {
			t.Fatal("expiry event missing")
		}
	})
}

func TestLogsAndDemand(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{OwnerLimit: 1})
	w := storetest.InsertWorker(t, b.st, core.DefaultPool, core.WorkerReady)
	err := s.Logs(t.Context(), w.ID, []*core.LogLine{{Stream: "stdout", Line: "a"}, {Stream: "bogus", Line: "b"}})
	wantCode(t, err, core.EINVALID, "lines[1].stream", "stdout, stderr or agent")
	if err := s.Logs(t.Context(), w.ID, []*core.LogLine{{Stream: "stderr", Line: strings.Repeat("x", MaxLogLineBytes+10), WorkerID: "someone-else"}}); err != nil {
		t.Fatal(err)
	}
	lines, err := b.st.LogList(t.Context(), &store.LogListParams{WorkerID: w.ID.String()})
	if err != nil || len(lines) != 1 || len(lines[0].Line) != MaxLogLineBytes {
		t.Fatalf("stored lines %d (err %v)", len(lines), err)
	}
	mustSubmit(t, s, SubmitRequest{Type: "a", Owner: "o"}, SubmitRequest{Type: "a", Owner: "o"})
	mustClaim(t, s, w.ID, 5)
	d, err := s.Demand(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := d[core.DefaultPool]; got.Running != 1 || got.Claimable != 0 || got.OwnerBlocked != 1 {
		t.Fatalf("demand %+v; owner limit 1 should hold the second task back", got)
	}
}
