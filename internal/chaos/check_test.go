package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// at is a fixed instant plus s seconds.
func at(s float64) time.Time {
	return time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC).Add(time.Duration(s * float64(time.Second)))
}

type fixture struct {
	sub *submitted
	ev  *evidence
	n   int
}

func newFixture() *fixture {
	return &fixture{sub: &submitted{ids: map[string]string{}}, ev: &evidence{marks: map[string]map[int]*attemptMark{},
		calmStart: at(0), calmEnd: at(10), chaosEnd: at(100)}}
}

// task adds a submitted task in state st after the given attempts (each
// "w:start:done|fail|-" = worker, start second, outcome).
func (f *fixture) task(st core.TaskState, attempts ...string) *core.Task {
	f.n++
	key := fmt.Sprintf("k%d", f.n)
	t := &core.Task{ID: uuid.New(), IdempotencyKey: key, State: st, Attempt: len(attempts)}
	f.sub.ids[key] = t.ID.String()
	f.ev.marks[t.ID.String()] = map[int]*attemptMark{}
	for i, a := range attempts {
		p := strings.Split(a, ":")
		if p[0] == "" {
			continue // granted, never started
		}
		var s float64
		fmt.Sscan(p[1], &s)
		f.ev.marks[t.ID.String()][i+1] = &attemptMark{Worker: p[0], Start: at(s), Started: true, Done: p[2] == "done", Failed: p[2] == "fail"}
		if st == core.TaskSucceeded && i == len(attempts)-1 {
			w := uuid.MustParse(p[0])
			t.WorkerID = &w
			t.Result = json.RawMessage(fmt.Sprintf(`{"attempt":%d,"worker":%q}`, i+1, p[0]))
			fin := at(s + 1)
			t.FinishedAt = &fin
		}
	}
	f.ev.tasks = append(f.ev.tasks, t)
	return t
}

func (f *fixture) requeue(t *core.Task, s float64, msg string) {
	f.ev.requeues = append(f.ev.requeues, &core.Event{Time: at(s), Kind: core.EventTaskRequeued, TaskID: t.ID.String(), Message: msg})
}

// Every rerun cause is told apart, and the delays after an agent kill are
// measured from the kill.
func TestAnalyzeReruns(t *testing.T) {
	f := newFixture()
	w1, w2, w3 := uuid.NewString(), uuid.NewString(), uuid.NewString()
	f.task(core.TaskSucceeded, w1+":20:fail", w2+":21:done")        // injected failure
	killed := f.task(core.TaskSucceeded, w1+":20:-", w2+":24:done") // agent killed at 22
	lostGrant := f.task(core.TaskSucceeded, ":", w2+":40:done")     // grant lost, lease expired
	f.task(core.TaskSucceeded, w3+":30:-", w2+":50:done")           // live worker lost it
	f.task(core.TaskSucceeded, w3+":31:done", w2+":52:done")        // finished, result not accepted
	f.ev.kills = []agentKill{{At: at(22), Worker: w1}}
	f.requeue(killed, 23.5, "task requeued: its worker was lost (1/20 losses)")
	f.requeue(lostGrant, 39, "lease expired; requeued (lost 1 of 20)")
	f.ev.workers = []*core.Worker{{ID: uuid.MustParse(w1), State: core.WorkerTerminated, Failure: core.FailAgentExit, TasksDone: 0},
		{ID: uuid.MustParse(w2), State: core.WorkerReady, TasksDone: 5}, {ID: uuid.MustParse(w3), State: core.WorkerFailed, Failure: core.FailHeartbeatLost}}

	res := analyze(&Config{Tasks: 5, Agents: 2}, f.sub, f.ev)
	want := Reruns{InjectedFailure: 1, AgentKilled: 1, GrantLost: 1, LiveWorkerLost: 1, ResultRejected: 1}
	if res.Reruns != want {
		t.Errorf("reruns %+v, want %+v", res.Reruns, want)
	}
	if !res.OK() {
		t.Errorf("failures %v, want none", res.Failures)
	}
	if res.RequeueDelay.N != 1 || res.RequeueDelay.MaxS != 1.5 || res.RestartDelay.MaxS != 2 {
		t.Errorf("requeue %+v restart %+v, want 1.5 s and 2 s", res.RequeueDelay, res.RestartDelay)
	}
	if res.HandlerCompletedTwice != 1 {
		t.Errorf("handler completed twice: %d, want 1", res.HandlerCompletedTwice)
	}
	if res.LiveWorkersFailed[string(core.FailHeartbeatLost)] != 1 || res.LiveWorkersFailed[string(core.FailAgentExit)] != 0 || res.WorkersFailed[string(core.FailAgentExit)] != 1 {
		t.Errorf("workers failed %v, of them not killed %v", res.WorkersFailed, res.LiveWorkersFailed)
	}
}

// Each invariant is caught: a lost task, an unfinished one, a key with two
// tasks, a completion counted twice, a result from an older grant, two
// workers on one instance, a leaked process.
func TestAnalyzeInvariants(t *testing.T) {
	f := newFixture()
	w := uuid.NewString()
	f.task(core.TaskFailed, w+":1:-")
	f.task(core.TaskQueued)
	dup := f.task(core.TaskSucceeded, w+":2:done")
	f.ev.tasks = append(f.ev.tasks, &core.Task{ID: uuid.New(), IdempotencyKey: dup.IdempotencyKey, State: core.TaskQueued})
	stale := f.task(core.TaskSucceeded, w+":3:done", w+":4:done")
	stale.Result = json.RawMessage(fmt.Sprintf(`{"attempt":1,"worker":%q}`, w))
	f.ev.workers = []*core.Worker{{ID: uuid.MustParse(w), InstanceID: "i-1", TasksDone: 3}, {ID: uuid.New(), InstanceID: "i-1"}}
	f.ev.leaked = []proc{{PID: 42, Agent: true}}

	res := analyze(&Config{Tasks: 4, Agents: 2}, f.sub, f.ev)
	got := []int{res.TasksLost, res.TasksUnfinished, res.DedupBroken, res.CompletedTwice, res.DuplicateSpawns, res.LeakedProcesses}
	if want := []int{1, 1, 1, 2, 1, 1}; !slices.Equal(got, want) {
		t.Errorf("lost, unfinished, dedup, completed twice, duplicate spawns, leaked = %v, want %v", got, want)
	}
	if len(res.Failures) != 6 || res.OK() {
		t.Errorf("failures %q, want 6", res.Failures)
	}
}

func TestFaultOrder(t *testing.T) {
	c := &Config{}
	c.DefaultFaults()
	got := strings.Join(faultOrder(c), ", ")
	if want := "leader SIGKILL, replica SIGSTOP past the lease, leader SIGKILL, PostgreSQL restart, leader SIGKILL"; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Tasks = -1 }, "tasks: must be between 1 and 1000000 (got -1)"},
		{func(c *Config) { c.Agents = 65 }, "agents: must be between 1 and 64 (got 65)"},
		{func(c *Config) { c.Replicas = 1 }, "replicas: must be between 2 and 9 (got 1)"},
		{func(c *Config) { c.Duration = time.Second }, "duration: must be at least 1m (got 1s)"},
		{func(c *Config) { c.Binary = "" }, "binary: the drover binary to run is required"},
	} {
		c := Config{Binary: "drover"}
		tc.edit(&c)
		c.Defaults()
		if err := c.Validate(); err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

// The proxy goes round robin, skips a backend that refuses connections
// (the request body is replayed on the next one) and one whose health
// check fails.
func TestProxySkipsDeadBackends(t *testing.T) {
	var hits [2]int
	var backends []string
	for i := range 2 {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			hits[i]++
			fmt.Fprintf(w, "%d:%s", i, b)
		}))
		t.Cleanup(s.Close)
		backends = append(backends, strings.TrimPrefix(s.URL, "http://"))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := NewProxy([]string{backends[0], dead, backends[1]})
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	for i := range 6 {
		resp, err := http.Post(front.URL+"/x", "text/plain", strings.NewReader(fmt.Sprint("body", i)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasSuffix(string(b), fmt.Sprint(":body", i)) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	if hits[0] == 0 || hits[1] == 0 || hits[0]+hits[1] != 6 {
		t.Errorf("hits %v, want both backends used, 6 in all", hits)
	}
	p.check(t.Context(), p.backends[1])
	if p.backends[1].up.Load() {
		t.Error("a backend that refuses connections is still marked up after a health check")
	}
}

// clusterProcs finds a process by the cluster in its environment, and its
// parent id; a process of another cluster is not listed.
func TestClusterProcs(t *testing.T) {
	cluster := "chaos-test-" + uuid.NewString()[:8]
	cmd := exec.Command("sleep", "30")
	cmd.Env = append(os.Environ(), "DROVER_CLUSTER="+cluster)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ps := clusterProcs(cluster)
	if len(ps) != 1 || ps[0].PID != cmd.Process.Pid || ps[0].PPID != os.Getpid() || ps[0].Agent {
		t.Errorf("processes of %s: %+v, want the sleep (pid %d, parent %d)", cluster, ps, cmd.Process.Pid, os.Getpid())
	}
	if ps := clusterProcs(cluster + "-other"); len(ps) != 0 {
		t.Errorf("another cluster lists %+v", ps)
	}
}
