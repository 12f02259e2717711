package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider/runpod/fakerunpod"
	"github.com/droverhq/drover/internal/server"
	"github.com/google/uuid"
)

// rpHandler sleeps a little (so that tasks overlap pods) and echoes i.
const rpHandler = `#!/bin/sh
p=$(cat)
i=$(printf '%s' "$p" | sed -n 's/.*"i":\([0-9]*\).*/\1/p')
sleep 0.2
printf '{"i":%s,"pod":"%s"}\n' "$i" "$RUNPOD_POD_ID"
`

const rpKey = "rp_e2e_SECRET"

var (
	gpuA = "NVIDIA GeForce RTX 4090"
	gpuB = "NVIDIA L40S"
)

// rpEnv is `drover serve` (in process) with a RunPod pool pointed at a
// fake RunPod on loopback that starts real agents for RUNNING pods.
type rpEnv struct {
	t    *testing.T
	fake *fakerunpod.Server
	srv  *server.Server
	c    *client.Client
	stop context.CancelFunc
	done chan error
	// clock is the fake RunPod's clock: the wall clock plus an offset the
	// test can move forward (to look at billing an hour later, say).
	clock *offsetClock
}

// offsetClock is the system clock shifted by an offset the test sets.
type offsetClock struct{ offset atomic.Int64 }

// Now returns the wall clock plus the offset, in UTC.
func (c *offsetClock) Now() time.Time {
	return time.Now().UTC().Add(time.Duration(c.offset.Load()))
}

// Skip moves the clock d forward.
func (c *offsetClock) Skip(d time.Duration) { c.offset.Add(int64(d)) }

type rpOpts struct {
	min, max, concurrency int
	agents                bool
	quota                 int
	window                time.Duration
	provisionTimeout      time.Duration
	idleTimeout           time.Duration
	candidates            []config.CandidateConfig
	before                func(*fakerunpod.Server)
	// exec replaces the shell handler.
	exec string
	// runpod is the pool's runpod block.
	runpod *config.RunPodPoolConfig
}

func newRPEnv(t *testing.T, o rpOpts) *rpEnv {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "handler.sh")
	if err := os.WriteFile(script, []byte(rpHandler), 0o755); err != nil {
		t.Fatal(err)
	}
	clock := &offsetClock{}
	fo := fakerunpod.Options{APIKey: rpKey, Clock: clock, ProvisionTime: 200 * time.Millisecond, StartTime: 200 * time.Millisecond,
		Quota: o.quota, Window: o.window, Logger: slog.New(slog.DiscardHandler)}
	if o.agents {
		fo.Agent = &fakerunpod.AgentOptions{Binary: droverBin, LogDir: dir, KillGrace: 2 * time.Second}
	}
	fake := fakerunpod.New(fo)
	if o.before != nil {
		o.before(fake)
	}
	rp := httptest.NewServer(fake.Handler())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := server.RandomToken()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.PublicURL = "http://" + cfg.Listen
	cfg.Database = "sqlite://" + filepath.Join(dir, "drover.db")
	cfg.Cluster = "e2e"
	cfg.Tick = config.Duration(200 * time.Millisecond)
	cfg.HeartbeatInterval = config.Duration(300 * time.Millisecond)
	cfg.HeartbeatTimeout = config.Duration(2 * time.Second)
	cfg.Tasks.OwnerLimit = 0
	cfg.Tasks.BackoffBase = config.Duration(50 * time.Millisecond)
	cfg.Tasks.BackoffMax = config.Duration(200 * time.Millisecond)
	cfg.Auth.OperatorToken = tok
	cfg.Providers.RunPod.BaseURL = rp.URL
	cfg.Providers.RunPod.APIKey = rpKey
	if o.candidates == nil {
		o.candidates = []config.CandidateConfig{{GPU: gpuA, Regions: []string{"US-TX-3", "US-KS-2"}}}
	}
	if o.exec == "" {
		o.exec = "sh " + script
	}
	pool := &config.PoolConfig{Provider: "runpod", Min: o.min, Max: o.max, Concurrency: o.concurrency,
		Image: "ghcr.io/acme/worker:1", Exec: o.exec, RequiresGPU: new(false), Candidates: o.candidates, RunPod: o.runpod}
	cfg.Pools = map[string]*config.PoolConfig{"gpu": pool}
	fillPool(pool)
	if o.provisionTimeout > 0 {
		pool.ProvisionTimeout = config.Duration(o.provisionTimeout)
	}
	if o.idleTimeout > 0 {
		pool.IdleTimeout = config.Duration(o.idleTimeout)
	}
	pool.BootTimeout = config.Duration(20 * time.Second)
	pool.OrphanGrace = config.Duration(5 * time.Second)
	pool.MaxSpawnPerTick = 20
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, stop := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, server.Options{Listener: ln, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(srv.URL(), tok)
	if err != nil {
		t.Fatal(err)
	}
	e := &rpEnv{t: t, fake: fake, srv: srv, c: c, stop: stop, done: make(chan error, 1), clock: clock}
	go func() { e.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		e.stop()
		<-e.done
		fake.Close()
		rp.Close()
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(dir, "fk*.log"))
			for _, l := range logs[:min(len(logs), 2)] {
				b, _ := os.ReadFile(l)
				t.Logf("agent log %s:\n%s", filepath.Base(l), tail(string(b), 1500))
			}
		}
	})
	return e
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// fillPool gives the pool the defaults a file would get.
func fillPool(p *config.PoolConfig) {
	d := config.DevPool()
	if p.IdleTimeout == 0 {
		p.IdleTimeout = d.IdleTimeout
	}
	if p.ProvisionTimeout == 0 {
		p.ProvisionTimeout = d.ProvisionTimeout
	}
	if p.DrainTimeout == 0 {
		p.DrainTimeout = d.DrainTimeout
	}
	if p.Concurrency == 0 {
		p.Concurrency = 1
	}
}

// waitFor polls cond every 100 ms until it holds or the deadline passes.
func (e *rpEnv) waitFor(what string, d time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ticks reads how many control-loop ticks the server has finished, from
// its /metrics (the tick duration histogram's count).
func (e *rpEnv) ticks() int {
	e.t.Helper()
	resp, err := http.Get(e.srv.URL() + "/metrics")
	if err != nil {
		e.t.Fatalf("reading /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("reading /metrics: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "drover_tick_duration_seconds_count"); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(rest[strings.LastIndex(rest, " ")+1:]), 64)
			if err != nil {
				e.t.Fatalf("bad tick count line %q: %v", line, err)
			}
			return int(n)
		}
	}
	return 0
}

func (e *rpEnv) submit(n int) []uuid.UUID {
	e.t.Helper()
	reqs := make([]wire.SubmitRequest, n)
	for i := range reqs {
		reqs[i] = wire.SubmitRequest{Type: "echo", Pool: "gpu", Params: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
	}
	res, err := e.c.SubmitBatch(context.Background(), reqs)
	if err != nil {
		e.t.Fatal(err)
	}
	ids := make([]uuid.UUID, len(res))
	for i, r := range res {
		ids[i] = r.Task.ID
	}
	return ids
}

func (e *rpEnv) tasks() []*wire.Task {
	e.t.Helper()
	ts, err := e.c.Tasks(context.Background(), wire.TaskFilter{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return ts
}

func (e *rpEnv) workers() []*wire.Worker {
	e.t.Helper()
	ws, err := e.c.Workers(context.Background(), wire.WorkerFilter{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return ws
}

func (e *rpEnv) events(kind core.EventKind) []*wire.Event {
	e.t.Helper()
	evs, err := e.c.Events(context.Background(), wire.EventFilter{Kinds: []string{string(kind)}, Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func succeeded(ts []*wire.Task) int {
	n := 0
	for _, t := range ts {
		if t.State == core.TaskSucceeded {
			n++
		}
	}
	return n
}

func liveState(s core.WorkerState) bool {
	return s != core.WorkerFailed && s != core.WorkerTerminated && s != core.WorkerTerminating
}

// checkPodsBelongToLiveWorkers: every pod the fake bills is a live worker's.
func (e *rpEnv) checkPodsBelongToLiveWorkers() {
	e.t.Helper()
	byInst := map[string]*wire.Worker{}
	for _, w := range e.workers() {
		if w.InstanceID != "" {
			byInst[w.InstanceID] = w
		}
	}
	for _, p := range e.fake.Live() {
		w := byInst[p.ID]
		if w == nil || !liveState(w.State) || p.Name != "drover-e2e-"+w.ID.String() {
			e.t.Errorf("pod %s (%s) is billed but belongs to no live worker (%+v)", p.ID, p.Name, w)
		}
	}
}

func TestRunPodEndToEnd(t *testing.T) {
	e := newRPEnv(t, rpOpts{min: 0, max: 4, agents: true, idleTimeout: 2 * time.Second,
		before: func(f *fakerunpod.Server) { f.NoCapacity(gpuA, "US-TX-3", -1) }})
	ids := e.submit(50)

	// Once tasks run, one pod vanishes with its task.
	var victim string
	e.waitFor("a running task on a RUNNING pod", 60*time.Second, func() bool {
		for _, tk := range e.tasks() {
			if tk.State == core.TaskRunning && tk.WorkerID != nil {
				for _, w := range e.workers() {
					if w.ID == *tk.WorkerID && w.InstanceID != "" {
						victim = w.InstanceID
						return true
					}
				}
			}
		}
		return false
	})
	if !e.fake.Vanish(victim) {
		t.Fatalf("vanish %s", victim)
	}
	e.waitFor("50 tasks succeeded", 120*time.Second, func() bool { return succeeded(e.tasks()) == len(ids) })
	e.checkPodsBelongToLiveWorkers()

	ws := e.workers()
	var vanished bool
	capacityAt := map[time.Time]bool{}
	for _, w := range ws {
		if w.InstanceID == victim && w.Failure == core.FailVanished {
			vanished = true
		}
		if w.Failure == core.FailCapacity {
			capacityAt[w.CreatedAt] = true
		}
	}
	if !vanished {
		t.Errorf("the worker of vanished pod %s was not failed as vanished", victim)
	}
	// Capacity fallback in the same tick: each capacity failure on
	// US-TX-3 has a spawn on US-KS-2 at the same tick time.
	if len(capacityAt) == 0 {
		t.Error("no capacity failure recorded for the full data center")
	}
	for at := range capacityAt {
		found := false
		for _, w := range ws {
			if w.CreatedAt.Equal(at) && w.Region == "US-KS-2" && w.InstanceID != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("capacity failure at %s without a spawn on the next candidate in the same tick", at)
		}
	}
	for _, p := range e.fake.Pods() {
		if p.DataCenter != "US-KS-2" {
			t.Errorf("pod %s placed in %s", p.ID, p.DataCenter)
		}
		if p.Env["DROVER_TOKEN"] == "" || p.Env["DROVER_EXEC"] == "" || p.Env["DROVER_CLUSTER"] != "e2e" {
			t.Errorf("pod %s env lacks the Drover variables", p.ID)
		}
	}
	// A task of the vanished pod was requeued and finished elsewhere.
	requeued := false
	for _, tk := range e.tasks() {
		if tk.Attempt > 1 || tk.Lost > 0 {
			requeued = true
		}
	}
	if !requeued {
		t.Error("no task was requeued after its pod vanished")
	}

	// Scale-down: idle workers end, and with them every pod.
	e.waitFor("no pod billed", 60*time.Second, func() bool { return len(e.fake.Live()) == 0 })
	for _, p := range e.fake.Pods() {
		if p.Ended == nil {
			t.Errorf("pod %s never ended", p.ID)
		}
	}
	billed := map[string]float64{}
	for _, p := range e.fake.Pods() {
		billed[p.ID] = p.Billed
	}
	// An hour later on the fake's clock, no ended pod has cost more.
	e.clock.Skip(time.Hour)
	e.fake.Step()
	for _, p := range e.fake.Pods() {
		if p.Billed != billed[p.ID] {
			t.Errorf("pod %s billed %.4f more after its worker ended", p.ID, p.Billed-billed[p.ID])
		}
	}
	if st := e.fake.Stats(); st.Unauthorized != 0 {
		t.Errorf("%d unauthorized calls", st.Unauthorized)
	}
}

func TestRunPodStuckProvisioningTimesOut(t *testing.T) {
	e := newRPEnv(t, rpOpts{min: 1, max: 1, provisionTimeout: 1500 * time.Millisecond,
		before: func(f *fakerunpod.Server) { f.StuckProvisioning(gpuA) }})
	e.waitFor("a provision-timeout", 30*time.Second, func() bool {
		for _, w := range e.workers() {
			if w.Failure == core.FailProvisionTimeout {
				return true
			}
		}
		return false
	})
	var failedInst string
	for _, w := range e.workers() {
		if w.Failure == core.FailProvisionTimeout {
			failedInst = w.InstanceID
		}
	}
	e.waitFor("the stuck pod deleted", 30*time.Second, func() bool {
		for _, p := range e.fake.Pods() {
			if p.ID == failedInst {
				return p.Deleted && p.Status == "TERMINATED"
			}
		}
		return false
	})
}

func TestRunPodStormScaleUpMakesExactly20Pods(t *testing.T) {
	const quota = 40
	e := newRPEnv(t, rpOpts{min: 20, max: 20, quota: quota, window: 3 * time.Second,
		before: func(f *fakerunpod.Server) {
			f.Inject(
				fakerunpod.Fault{Route: fakerunpod.RouteCreate, Status: 429, RetryAfter: 1, Count: 3},
				fakerunpod.Fault{Route: fakerunpod.RouteCreate, Status: 503, Count: 2},
				fakerunpod.Fault{Route: fakerunpod.RouteCreate, Status: 502, AfterDoing: true, Count: 2},
				fakerunpod.Fault{Route: fakerunpod.RouteList, Status: 500, Count: 2},
			)
			f.SetErrorRates(0.05, 0.05, 1)
		}})
	e.waitFor("20 live pods", 60*time.Second, func() bool { return len(e.fake.Live()) >= 20 })
	f := e.fake
	f.SetErrorRates(0, 0, 0)
	// Several more ticks of the control loop: no extra spawns.
	from := e.ticks()
	e.waitFor("5 more ticks", 30*time.Second, func() bool { return e.ticks() >= from+5 })
	pods := f.Pods()
	names := map[string]int{}
	for _, p := range pods {
		names[p.Name]++
	}
	if len(pods) != 20 || len(names) != 20 {
		t.Errorf("%d pods (%d names) created, want exactly 20", len(pods), len(names))
	}
	live := 0
	for _, w := range e.workers() {
		if liveState(w.State) && w.InstanceID != "" {
			live++
		}
	}
	if live != 20 {
		t.Errorf("%d live workers with a pod, want 20", live)
	}
	e.checkPodsBelongToLiveWorkers()
	st := f.Stats()
	if st.MaxInWindow > quota {
		t.Errorf("%d requests in one window, advertised budget %d", st.MaxInWindow, quota)
	}
	if st.Injected == 0 {
		t.Error("no fault injected")
	}
	t.Logf("calls %v, injected %d, over budget %d, max in window %d/%d", st.Calls, st.Injected, st.OverBudget, st.MaxInWindow, quota)
}

func TestRunPodBalanceRunsOutMidRun(t *testing.T) {
	e := newRPEnv(t, rpOpts{min: 1, max: 4, agents: true,
		candidates: []config.CandidateConfig{{GPU: gpuA, Regions: []string{"US-TX-3"}}, {GPU: gpuB, Regions: []string{"EU-RO-1"}}}})
	e.waitFor("one ready worker", 60*time.Second, func() bool {
		for _, w := range e.workers() {
			if w.State == core.WorkerReady {
				return true
			}
		}
		return false
	})
	e.fake.SetAccount(402)
	before := e.fake.Stats().CreateAttempts
	ids := e.submit(12) // demand for 4 workers
	e.waitFor("12 tasks succeeded on the running worker", 90*time.Second, func() bool { return succeeded(e.tasks()) == len(ids) })
	after := e.fake.Stats().CreateAttempts
	if n := after - before; n != 1 {
		t.Errorf("%d creates sent after the 402, want 1 (no spawn loop)", n)
	}
	var quota []string
	for _, w := range e.workers() {
		if w.Failure == core.FailQuota {
			quota = append(quota, w.Reason)
		}
	}
	if len(quota) == 0 || len(quota) > 2 {
		t.Errorf("%d quota failures, want one per candidate at most: %q", len(quota), quota)
	}
	for _, r := range quota {
		if !strings.Contains(r, "add funds") || strings.Contains(r, rpKey) {
			t.Errorf("quota failure without the hint, or with the key: %q", r)
		}
	}
	opened := 0
	for _, ev := range e.events(core.EventBreakerState) {
		if strings.Contains(ev.Message, "open") {
			opened++
		}
	}
	if opened < 2 {
		t.Errorf("%d breaker-open events, want every candidate open", opened)
	}
	if q := e.events(core.EventProviderQuota); len(q) != 1 {
		t.Errorf("%d provider.quota events, want exactly one", len(q))
	} else if !strings.Contains(q[0].Message, "add funds") || strings.Contains(q[0].Message, rpKey) {
		t.Errorf("quota event without the hint, or with the key: %q", q[0].Message)
	}
}

func TestRunPodCandidatesOrderedByAvailability(t *testing.T) {
	h100 := "NVIDIA H100 80GB HBM3" // LOW stock in the fake's catalog
	e := newRPEnv(t, rpOpts{min: 2, max: 2,
		candidates: []config.CandidateConfig{{GPU: h100, Regions: []string{"US-TX-3"}}, {GPU: gpuA, Regions: []string{"US-KS-2"}}},
		runpod:     &config.RunPodPoolConfig{CandidatesOrder: "availability"}})
	e.waitFor("2 pods", 30*time.Second, func() bool { return len(e.fake.Live()) == 2 })
	for _, p := range e.fake.Pods() {
		if p.GPU != gpuA {
			t.Errorf("pod %s on %s: the better-stocked candidate was not tried first", p.ID, p.GPU)
		}
	}
}

func TestRunPodExitedPodIsReplacedAndDeleted(t *testing.T) {
	e := newRPEnv(t, rpOpts{min: 1, max: 1, agents: true})
	var first *wire.Worker
	e.waitFor("a ready worker", 60*time.Second, func() bool {
		for _, w := range e.workers() {
			if w.State == core.WorkerReady {
				first = w
				return true
			}
		}
		return false
	})
	if !e.fake.Exit(first.InstanceID) {
		t.Fatalf("exit %s", first.InstanceID)
	}
	e.waitFor("the exited pod deleted and a new worker ready", 60*time.Second, func() bool {
		deleted := false
		for _, p := range e.fake.Pods() {
			if p.ID == first.InstanceID {
				deleted = p.Deleted
			}
		}
		replaced := false
		for _, w := range e.workers() {
			if w.ID != first.ID && w.State == core.WorkerReady {
				replaced = true
			}
		}
		return deleted && replaced
	})
	for _, w := range e.workers() {
		if w.ID == first.ID && w.State != core.WorkerFailed && w.State != core.WorkerTerminated {
			t.Errorf("the exited pod's worker is %s", w.State)
		}
		if w.ID == first.ID && w.Failure != core.FailAgentExit {
			t.Errorf("the exited pod's worker failed as %q (%s), want agent-exit", w.Failure, w.Reason)
		}
	}
}
