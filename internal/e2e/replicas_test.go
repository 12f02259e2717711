//go:build replicas

// The replicas failover test (3 serve processes on one PostgreSQL behind a
// loopback proxy, 5 leader SIGKILLs, a SIGSTOP past the lease) runs with
// `go test -tags replicas -run TestReplicasFailover ./internal/e2e`. It is
// kept out of the default run for its length (about a minute of real
// time, most of it the paused leader's lease).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider/local"
	"github.com/droverhq/drover/internal/server"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
)

// lbProxy is a loopback load balancer: requests go round-robin to the
// backends, and a backend that refuses the connection is skipped (the
// request, body buffered, is tried on the next one).
type lbProxy struct {
	backends []string
	next     atomic.Uint64
	hc       *http.Client
}

func (p *lbProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	start := p.next.Add(1)
	var lastErr error
	for i := range p.backends {
		b := p.backends[(int(start)+i)%len(p.backends)]
		req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+b+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := p.hc.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, fmt.Sprint(lastErr), http.StatusBadGateway)
}

const sleepHandler = `#!/bin/sh
p=$(cat)
sleep 0.3
printf '{"p":%s,"attempt":%s,"worker":"%s"}\n' "$p" "$DROVER_ATTEMPT" "$DROVER_WORKER_ID"
`

// replicaSet is several `drover serve` processes on one PostgreSQL schema
// behind a loopback proxy.
type replicaSet struct {
	t     *testing.T
	dir   string
	yaml  []string
	procs []*exec.Cmd
	addrs []string
	tok   string
	st    *postgres.Store
	c     *client.Client
	n     int
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newReplicaSet(t *testing.T, replicas, agents int) *replicaSet {
	base := pgtest.URL(t)
	dbURL := pgtest.WithParams(t, base, map[string]string{"search_path": pgtest.NewSchema(t, base)})
	dir := t.TempDir()
	script := filepath.Join(dir, "handler.sh")
	if err := os.WriteFile(script, []byte(sleepHandler), 0o755); err != nil {
		t.Fatal(err)
	}
	tok, err := server.RandomToken()
	if err != nil {
		t.Fatal(err)
	}
	rs := &replicaSet{t: t, dir: dir, tok: tok}
	for range replicas {
		rs.addrs = append(rs.addrs, freeAddr(t))
	}
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := &http.Server{Handler: &lbProxy{backends: rs.addrs, hc: &http.Client{}}}
	go func() { _ = proxy.Serve(proxyLn) }()
	t.Cleanup(func() { _ = proxy.Close() })
	public := "http://" + proxyLn.Addr().String()
	for i, addr := range rs.addrs {
		y := fmt.Sprintf(`listen: %s
public_url: %s
cluster: e2e
database: %q
tick: 200ms
heartbeat_interval: 500ms
heartbeat_timeout: 10s
log_level: info
tasks:
  owner_limit: 0
pools:
  default:
    provider: local
    min: %d
    max: %d
    concurrency: 1
    requires_gpu: false
    boot_timeout: 30s
    orphan_grace: 30s
    exec: %q
providers:
  local:
    dir: %s
`, addr, public, dbURL, agents, agents, "sh "+script, filepath.Join(dir, "agents"))
		p := filepath.Join(dir, fmt.Sprintf("drover-%d.yaml", i))
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		rs.yaml = append(rs.yaml, p)
		rs.procs = append(rs.procs, nil)
	}
	rs.st, err = postgres.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.st.Close() })
	for i := range rs.addrs {
		rs.start(i)
	}
	rs.c, err = client.New(public, tok)
	if err != nil {
		t.Fatal(err)
	}
	for i, addr := range rs.addrs {
		c, err := client.New("http://"+addr, tok)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, fmt.Sprintf("replica %d ready", i), func() (bool, string) {
			err := c.Ready(context.Background())
			return err == nil, fmt.Sprint(err)
		})
	}
	t.Cleanup(rs.close)
	return rs
}

func (rs *replicaSet) start(i int) {
	rs.t.Helper()
	rs.n++
	logf, err := os.Create(filepath.Join(rs.dir, fmt.Sprintf("serve-%d-%d.log", i, rs.n)))
	if err != nil {
		rs.t.Fatal(err)
	}
	cmd := exec.Command(droverBin, "serve", "--config", rs.yaml[i])
	cmd.Env = append(os.Environ(), "DROVER_OPERATOR_TOKEN="+rs.tok)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		rs.t.Fatal(err)
	}
	logf.Close()
	rs.procs[i] = cmd
}

// leader returns the leadership row and the index of the replica that
// holds it (-1 when none of the live processes does).
func (rs *replicaSet) leader() (*store.Leader, int) {
	l, err := rs.st.LeaderGet(context.Background())
	if err != nil {
		return nil, -1
	}
	parts := strings.Split(l.LeaderID, "-")
	if len(parts) < 3 {
		return l, -1
	}
	pid, _ := strconv.Atoi(parts[len(parts)-2])
	for i, p := range rs.procs {
		if p != nil && p.Process.Pid == pid {
			return l, i
		}
	}
	return l, -1
}

func (rs *replicaSet) close() {
	for _, p := range rs.procs {
		if p != nil {
			_ = p.Process.Signal(syscall.SIGCONT)
			_ = p.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range rs.procs {
		if p != nil {
			done := make(chan struct{})
			go func() { _ = p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = p.Process.Kill()
				<-done
			}
		}
	}
	// The agents survive their server; stop them as a restarted server's
	// provider would.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lp, err := local.New(local.Options{Dir: filepath.Join(rs.dir, "agents"), Cluster: "e2e", KillGrace: 5 * time.Second})
	if err == nil {
		err = lp.Shutdown(ctx)
	}
	if err != nil {
		rs.t.Errorf("stop agents: %v", err)
	}
	if rs.t.Failed() {
		for i := range rs.procs {
			for n := 1; n <= rs.n; n++ {
				if b, err := os.ReadFile(filepath.Join(rs.dir, fmt.Sprintf("serve-%d-%d.log", i, n))); err == nil {
					rs.t.Logf("serve-%d-%d.log:\n%s", i, n, lastLines(string(b), 30))
				}
			}
		}
	}
}

// Three replicas on one PostgreSQL: SIGKILL the leader (restarting it)
// several times while tasks run. Another replica leads within a second or
// two (the dead leader's session frees its lock), no worker is spawned
// twice for one demand, the agents' leases survive (no task reruns) and a
// SIGSTOPped leader that comes back past its lease does not lead.
func TestReplicasFailover(t *testing.T) {
	const agents, kills, n = 3, 5, 120
	rs := newReplicaSet(t, 3, agents)
	ctx := context.Background()
	reqs := make([]wire.SubmitRequest, n)
	for i := range reqs {
		reqs[i] = wire.SubmitRequest{Type: "e2e", Params: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), IdempotencyKey: fmt.Sprintf("k%d", i)}
	}
	if _, err := rs.c.SubmitBatch(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	var failovers []time.Duration
	for k := range kills {
		var (
			old *store.Leader
			idx int
		)
		eventually(t, 60*time.Second, "a live replica leads", func() (bool, string) {
			old, idx = rs.leader()
			return idx >= 0 && old.ExpiresAt.After(time.Now()), fmt.Sprint(old)
		})
		killed := time.Now()
		_ = rs.procs[idx].Process.Kill()
		_ = rs.procs[idx].Wait()
		rs.procs[idx] = nil
		eventually(t, 30*time.Second, "another replica leads", func() (bool, string) {
			l, i := rs.leader()
			return i >= 0 && l.Term > old.Term, fmt.Sprint(l)
		})
		failovers = append(failovers, time.Since(killed))
		rs.start(idx)
		t.Logf("kill %d: replica %d (term %d) → failover in %s", k+1, idx, old.Term, failovers[k].Round(time.Millisecond))
	}
	// A leader paused past its lease (15 s) does not lead when it resumes.
	l, idx := rs.leader()
	if idx >= 0 {
		_ = rs.procs[idx].Process.Signal(syscall.SIGSTOP)
		eventually(t, 40*time.Second, "takeover from the paused leader", func() (bool, string) {
			nl, i := rs.leader()
			return i >= 0 && i != idx && nl.Term > l.Term, fmt.Sprint(nl)
		})
		_ = rs.procs[idx].Process.Signal(syscall.SIGCONT)
	}
	eventually(t, 120*time.Second, "all tasks succeeded", func() (bool, string) {
		tasks, err := rs.c.Tasks(ctx, wire.TaskFilter{Limit: 1000})
		if err != nil {
			return false, err.Error()
		}
		c := countStates(tasks)
		return c[core.TaskSucceeded] == n, fmt.Sprint(c)
	})
	tasks, err := rs.c.Tasks(ctx, wire.TaskFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// Every task runs once. A replica SIGKILLed after committing a
	// long-poll claim but before its answer left grants a task no agent
	// ever sees: the agent's next heartbeats do not report it, so it is
	// released back to the queue uncounted (a task.requeued event), not
	// left to its lease's expiry. Any rerun — a handler failure, a worker
	// lost with its lease, a grant that expired — is a defect.
	for _, tk := range tasks {
		if tk.Attempt != 1 || tk.Lost != 0 || tk.Failures != 0 {
			t.Errorf("task %s ran %d times across the failovers (lost %d, failures %d)", tk.ID, tk.Attempt, tk.Lost, tk.Failures)
		}
	}
	if evs, err := rs.st.EventList(ctx, &store.EventListParams{Kinds: []core.EventKind{core.EventTaskRequeued}}); err == nil {
		for _, e := range evs {
			t.Logf("requeued: task %s: %s", e.TaskID, e.Message)
		}
	}
	ws, err := rs.c.Workers(ctx, wire.WorkerFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// Exactly `agents` workers ever ran an agent. A leader killed between
	// writing a spawn's row and creating its instance leaves a row that
	// the next leader fails as provider-error (no instance was ever made)
	// and replaces: that is the designed recovery, not a duplicate spawn.
	live, interrupted := 0, 0
	var states []string
	for _, w := range ws {
		states = append(states, string(w.State)+"/"+string(w.Failure)+"/"+w.InstanceID)
		if w.Failure != "" {
			// Say why, for whoever reads a failure of this test.
			evs, err := rs.st.EventList(ctx, &store.EventListParams{WorkerID: w.ID.String()})
			for _, e := range evs {
				t.Logf("worker %s: %s %s: %s", w.ID, e.Time.Format("15:04:05.000"), e.Kind, e.Message)
			}
			if err != nil {
				t.Logf("worker %s: events: %v", w.ID, err)
			}
		}
		switch {
		case w.Failure == core.FailHeartbeatLost:
			t.Errorf("worker %s (instance %s) failed as heartbeat-lost: its agent was alive throughout", w.ID, w.InstanceID)
			live++
		case w.Failure == core.FailProvider && w.InstanceID == "":
			interrupted++
		default:
			live++
		}
	}
	if live != agents || interrupted > kills {
		t.Errorf("%d workers with an instance and %d interrupted spawns for a pool of %d over %d kills (duplicate spawns?): %v", live, interrupted, agents, kills, states)
	} else if interrupted > 0 {
		t.Logf("%d spawns interrupted by a leader kill were failed and replaced: %v", interrupted, states)
	}
	slices.Sort(failovers)
	t.Logf("leader failover over %d SIGKILLs: p50 %s, max %s", kills, failovers[len(failovers)/2].Round(time.Millisecond), failovers[len(failovers)-1].Round(time.Millisecond))
}
