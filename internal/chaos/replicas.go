package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/droverhq/drover/internal/store"
)

// replica is one `drover serve` process (restarted in place: same address,
// same configuration).
type replica struct {
	idx  int
	addr string
	conf string
	logs string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
}

// fleet is the replicas of one run.
type fleet struct {
	bin      string
	token    string
	replicas []*replica
	hc       *http.Client
}

func (f *fleet) start(r *replica) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts++
	logf, err := os.OpenFile(r.logs, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("replica %d: open log: %w", r.idx, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== start %d at %s\n", r.starts, time.Now().UTC().Format(time.RFC3339Nano))
	// The replica's agents and their handlers inherit TMPDIR: an agent
	// the run SIGKILLs mid-task leaves its output directory there, inside
	// the run's directory, instead of in the machine's /tmp.
	tmp := filepath.Join(filepath.Dir(r.conf), "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("replica %d: temp dir: %w", r.idx, err)
	}
	cmd := exec.Command(f.bin, "serve", "--config", r.conf)
	cmd.Env = append(os.Environ(), "DROVER_OPERATOR_TOKEN="+f.token, "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Files a replica writes next to itself (generated keys) stay in
	// the run's directory.
	cmd.Dir = filepath.Dir(r.conf)
	// Its own process group: a Ctrl-C of the harness reaches the harness,
	// which stops the replicas itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("replica %d: start %s serve: %w", r.idx, f.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	return nil
}

// pid returns the replica's process id, 0 when it is not running.
func (r *replica) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	select {
	case <-r.done:
		return 0
	default:
		return r.cmd.Process.Pid
	}
}

func (r *replica) signal(sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return fmt.Errorf("replica %d is not running", r.idx)
	}
	return r.cmd.Process.Signal(sig)
}

// kill SIGKILLs the replica and waits until it is reaped.
func (r *replica) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// stop ends the replica gracefully (SIGCONT, SIGTERM), SIGKILL after grace.
func (r *replica) stop(grace time.Duration) {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// ready reports whether the replica answers /readyz with 200.
func (f *fleet) ready(ctx context.Context, r *replica) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.addr+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady polls until the replica is ready or timeout passes.
func (f *fleet) waitReady(ctx context.Context, r *replica, timeout time.Duration) error {
	err := poll(ctx, timeout, func() bool { return f.ready(ctx, r) })
	if err != nil {
		return fmt.Errorf("replica %d (%s) not ready: %w (log: %s)", r.idx, r.addr, err, r.logs)
	}
	return nil
}

// leaderOf returns the leadership row and the replica whose process holds
// it (nil when no running replica does). The holder id is
// <host>-<pid>-<random>.
func (f *fleet) leaderOf(ctx context.Context, st store.LeaderReader) (*store.Leader, *replica) {
	l, err := st.LeaderGet(ctx)
	if err != nil {
		return nil, nil
	}
	parts := strings.Split(l.LeaderID, "-")
	if len(parts) < 3 {
		return l, nil
	}
	pid, _ := strconv.Atoi(parts[len(parts)-2])
	for _, r := range f.replicas {
		if p := r.pid(); p != 0 && p == pid {
			return l, r
		}
	}
	return l, nil
}

var errTimeout = errors.New("timed out")

// poll calls cond every 100 ms until it holds, ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return errTimeout
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// replicaConfig is the drover.yaml of every replica (only listen differs).
func replicaConfig(addr, public, cluster, dbURL, script, agentsDir string, c *Config) string {
	y := fmt.Sprintf(`listen: %s
public_url: %s
cluster: %s
database: %q
log_level: info
tasks:
  owner_limit: 0
  backoff_base: 500ms
  backoff_max: 2s
pools:
  default:
    provider: local
    min: 0
    max: %d
    concurrency: 1
    requires_gpu: false
    boot_timeout: 60s
    exec: %q
providers:
  local:
    dir: %s
`, addr, public, cluster, dbURL, c.Agents, "sh "+script, agentsDir)
	if c.LeaderTTL > 0 {
		y += fmt.Sprintf("leader:\n  ttl: %s\n  interval: %s\n", c.LeaderTTL, c.LeaderTTL/3)
	}
	if c.Tick > 0 {
		y += fmt.Sprintf("tick: %s\n", c.Tick)
	}
	return y
}

func replicaPaths(dir string, i int) (conf, logs string) {
	return filepath.Join(dir, fmt.Sprintf("drover-%d.yaml", i)), filepath.Join(dir, fmt.Sprintf("serve-%d.log", i))
}
