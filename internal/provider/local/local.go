// Package local is the provider whose instances are `drover agent`
// processes on this host: for development, for the demo and end-to-end
// tests, and for a user's own GPU box (one agent per GPU with
// CUDA_VISIBLE_DEVICES).
//
// Each instance is recorded in <Dir>/<instance>.json (pid, worker id, pool,
// start time) so that a restarted server adopts the agents that are still
// running: List checks that the pid is alive and is the agent of that
// worker (its /proc/<pid>/cmdline names the worker id). Agents run in their
// own process group, so a Ctrl-C of the server does not kill them; Delete
// sends SIGTERM to the group (the agent drains), then SIGKILL after
// KillGrace. The worker token travels in the agent's environment, never on
// its command line. Instances cost nothing.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
)

// Name is the provider name in drover.yaml.
const Name = "local"

// DefaultKillGrace is the time between SIGTERM and SIGKILL on Delete.
const DefaultKillGrace = 10 * time.Second

// Pool is what the provider needs to know about one pool.
type Pool struct {
	// Exec is the handler command the agents run (`drover agent --exec`).
	Exec string
	// Env is extra environment for the agents.
	Env map[string]string
}

// Options configure the provider.
type Options struct {
	// Dir holds the state files and the agents' logs (required).
	Dir string
	// Executable is the drover binary to start; default os.Executable().
	Executable string
	// Args returns the arguments after the executable; default
	// ["agent", "--worker-id", ID, "--exec", EXEC]. Tests replace it.
	Args func(req *provider.CreateRequest, exec string) []string
	// Pools maps pool names to their agent settings.
	Pools map[string]Pool
	// GPUs, when non-empty, gives each agent one of these GPU indexes in
	// CUDA_VISIBLE_DEVICES; with all of them taken Create fails with a
	// capacity error.
	GPUs []int
	// KillGrace is the time between SIGTERM and SIGKILL (DefaultKillGrace).
	KillGrace time.Duration
	// Cluster names this Drover deployment: its agents are named
	// local-<cluster>-<worker id>, carry DROVER_CLUSTER=<cluster> in their
	// environment and their state file, and List returns only agents of
	// this cluster (several deployments may share Dir).
	Cluster string
	// Clock stamps start times (default core.SystemClock).
	Clock  core.Clock
	Logger *slog.Logger
}

// Provider starts agent processes on this host. Safe for concurrent use.
type Provider struct {
	opt Options
	log *slog.Logger

	mu sync.Mutex
	// exited holds a channel per child started by this process, closed when
	// the child has been reaped.
	exited map[string]chan struct{}
	// status holds how each child started by this process ended.
	statusMu sync.Mutex
	status   map[string]string
}

var _ provider.Provider = (*Provider)(nil)

// record is the state file of one instance.
type record struct {
	ID         string             `json:"id"`
	PID        int                `json:"pid"`
	WorkerID   string             `json:"worker_id"`
	Pool       string             `json:"pool"`
	Placement  provider.Placement `json:"placement"`
	GPU        *int               `json:"gpu,omitempty"`
	StartedAt  time.Time          `json:"started_at"`
	Log        string             `json:"log"`
	Cluster    string             `json:"cluster,omitempty"`
	TermSentAt *time.Time         `json:"term_sent_at,omitempty"`
}

// New returns a provider keeping its state in opt.Dir (created if needed).
func New(opt Options) (*Provider, error) {
	if opt.Dir == "" {
		return nil, errors.New("local provider: dir is required")
	}
	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("local provider: create dir: %w", err)
	}
	if opt.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("local provider: find own executable: %w", err)
		}
		opt.Executable = exe
	}
	if opt.Args == nil {
		opt.Args = func(req *provider.CreateRequest, exec string) []string {
			return []string{"agent", "--worker-id", req.WorkerID, "--exec", exec}
		}
	}
	if opt.KillGrace <= 0 {
		opt.KillGrace = DefaultKillGrace
	}
	if opt.Clock == nil {
		opt.Clock = core.SystemClock{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Provider{opt: opt, log: opt.Logger.With("provider", Name), exited: map[string]chan struct{}{}, status: map[string]string{}}, nil
}

// Name returns "local".
func (p *Provider) Name() string { return Name }

// Dir returns the state directory.
func (p *Provider) Dir() string { return p.opt.Dir }

// LogPath returns the log file of an instance.
func (p *Provider) LogPath(id string) string { return filepath.Join(p.opt.Dir, id+".log") }

// TempPath returns an instance's temporary directory, its TMPDIR unless
// the pool's env sets another: what the agent leaves there (an attempt's
// output directory when it was killed mid-task) goes with the instance
// when Delete finds it gone, as a pod's disk would.
func (p *Provider) TempPath(id string) string { return filepath.Join(p.opt.Dir, id+".tmp") }

// Create starts one agent process.
func (p *Provider) Create(ctx context.Context, req *provider.CreateRequest) (*provider.Instance, error) {
	if req.WorkerID == "" || strings.ContainsAny(req.WorkerID, "/\\ \x00") {
		return nil, provider.NewError("create", provider.KindInvalid, "worker id %q is not usable in a file name", req.WorkerID)
	}
	pool, ok := p.opt.Pools[req.Pool]
	if !ok || strings.TrimSpace(pool.Exec) == "" {
		return nil, provider.NewError("create", provider.KindInvalid, "pool %q has no exec command for local agents", req.Pool)
	}
	id := "local-" + req.WorkerID
	if p.opt.Cluster != "" {
		id = "local-" + p.opt.Cluster + "-" + req.WorkerID
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.readAll()
	if err != nil {
		return nil, &provider.Error{Op: "create", Kind: provider.KindTransient, Message: "read state", Err: err}
	}
	var gpu *int
	if len(p.opt.GPUs) > 0 {
		used := map[int]bool{}
		for _, r := range recs {
			if r.GPU != nil && p.alive(r) {
				used[*r.GPU] = true
			}
		}
		for _, g := range p.opt.GPUs {
			if !used[g] {
				gpu = &g
				break
			}
		}
		if gpu == nil {
			return nil, provider.NewError("create", provider.KindCapacity, "all %d local GPUs have an agent", len(p.opt.GPUs))
		}
	}
	for _, r := range recs {
		if r.ID == id && p.alive(r) {
			return p.instance(r), nil // idempotent: already running
		}
	}

	logPath := p.LogPath(id)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, &provider.Error{Op: "create", Kind: provider.KindTransient, Message: "open agent log", Err: err}
	}
	tmp := p.TempPath(id)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		logf.Close()
		return nil, &provider.Error{Op: "create", Kind: provider.KindTransient, Message: "create agent temporary directory", Err: err}
	}
	cmd := exec.Command(p.opt.Executable, p.opt.Args(req, pool.Exec)...)
	cmd.Env = agentEnv(append(os.Environ(), "TMPDIR="+tmp), pool.Env, req.Env, id, gpu)
	if p.opt.Cluster != "" {
		cmd.Env = append(cmd.Env, "DROVER_CLUSTER="+p.opt.Cluster)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The agent waits on this pipe (fd 3) until its state file is written:
	// if this process dies in between, the agent exits instead of running
	// unrecorded (see GateEnv).
	gateR, gateW, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, &provider.Error{Op: "create", Kind: provider.KindTransient, Message: "open start gate", Err: err}
	}
	defer gateW.Close()
	cmd.ExtraFiles = []*os.File{gateR}
	cmd.Env = append(cmd.Env, GateEnv+"=3")
	err = cmd.Start()
	gateR.Close()
	logf.Close()
	if err != nil {
		return nil, &provider.Error{Op: "create", Kind: provider.KindInvalid, Message: "start agent", Err: err}
	}
	done := make(chan struct{})
	p.exited[id] = done
	go func() {
		err := cmd.Wait()
		reason := "exit status 0"
		if err != nil {
			reason = err.Error() // "exit status N" or "signal: killed"
		}
		p.statusMu.Lock()
		p.status[id] = reason
		p.statusMu.Unlock()
		close(done)
	}()
	r := &record{
		ID: id, PID: cmd.Process.Pid, WorkerID: req.WorkerID, Pool: req.Pool,
		Placement: req.Placement, GPU: gpu, StartedAt: p.opt.Clock.Now(), Log: logPath,
		Cluster: p.opt.Cluster,
	}
	if err := p.write(r); err != nil {
		_ = syscall.Kill(-r.PID, syscall.SIGKILL)
		return nil, &provider.Error{Op: "create", Kind: provider.KindTransient, Message: "write state", Err: err}
	}
	if _, err := gateW.Write([]byte{gateGo}); err != nil {
		// The agent is gone already; its exit is reported like any other.
		p.log.Warn("agent exited before its start gate opened", "instance", id, "err", err)
	}
	p.log.Info("agent started", "instance", id, "worker", req.WorkerID, "pool", req.Pool, "pid", r.PID, "log", logPath)
	return p.instance(r), nil
}

// Get returns one instance; a recorded instance whose process is gone has
// state gone.
func (p *Provider) Get(ctx context.Context, id string) (*provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, err := p.read(id)
	if err != nil {
		return nil, err
	}
	return p.instance(r), nil
}

// List returns the live agent processes of this cluster recorded in Dir,
// including ones started by an earlier server process.
func (p *Provider) List(ctx context.Context) ([]*provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.readAll()
	if err != nil {
		return nil, &provider.Error{Op: "list", Kind: provider.KindTransient, Message: "read state", Err: err}
	}
	var out []*provider.Instance
	for _, r := range recs {
		if r.Cluster != p.opt.Cluster {
			continue // another deployment's agent
		}
		// Agents that exited on their own stay listed (gone, with how they
		// ended) until deleted, so their worker fails as agent-exit at the
		// next tick.
		if in := p.instance(r); in.State != provider.InstanceGone || in.Exited {
			out = append(out, in)
		}
	}
	return out, nil
}

// Delete stops an agent: SIGTERM to its process group (the agent drains),
// SIGKILL once KillGrace has passed. It returns without waiting; call it
// again until it returns an error matching provider.ErrNotFound, which it
// does once the process is gone (and the state file removed).
func (p *Provider) Delete(ctx context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, err := p.read(id)
	if err != nil {
		return err
	}
	if !p.alive(r) {
		if err := os.RemoveAll(p.TempPath(id)); err != nil {
			return &provider.Error{Op: "delete", Kind: provider.KindTransient, Message: "remove agent temporary directory", Err: err}
		}
		if err := os.Remove(p.statePath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return &provider.Error{Op: "delete", Kind: provider.KindTransient, Message: "remove state", Err: err}
		}
		delete(p.exited, id)
		return provider.NewError("delete", provider.KindNotFound, "agent %s has exited", id)
	}
	now := p.opt.Clock.Now()
	if r.TermSentAt == nil {
		if err := syscall.Kill(-r.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return &provider.Error{Op: "delete", Kind: provider.KindTransient, Message: "signal agent", Err: err}
		}
		r.TermSentAt = &now
		if err := p.write(r); err != nil {
			return &provider.Error{Op: "delete", Kind: provider.KindTransient, Message: "write state", Err: err}
		}
		p.log.Info("agent stopping (SIGTERM)", "instance", id, "pid", r.PID)
		pid, worker := r.PID, r.WorkerID
		time.AfterFunc(p.opt.KillGrace, func() { p.kill(id, pid, worker) })
		return nil
	}
	if now.Sub(*r.TermSentAt) >= p.opt.KillGrace {
		_ = syscall.Kill(-r.PID, syscall.SIGKILL)
	}
	return nil
}

// kill sends SIGKILL to an agent still alive after the grace.
func (p *Provider) kill(id string, pid int, worker string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, err := p.read(id)
	if err != nil || r.PID != pid || !p.alive(r) {
		return
	}
	p.log.Warn("agent did not exit after SIGTERM; SIGKILL", "instance", id, "pid", pid, "worker", worker)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// Shutdown stops every agent recorded in Dir and waits until they are gone
// or ctx ends: SIGTERM first, SIGKILL after KillGrace. The demo uses it; a
// server does not (agents outlive server restarts).
func (p *Provider) Shutdown(ctx context.Context) error {
	insts, err := p.List(ctx)
	if err != nil {
		return err
	}
	for _, in := range insts {
		if err := p.Delete(ctx, in.ID); err != nil && !errors.Is(err, provider.ErrNotFound) {
			return err
		}
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	deadline := time.NewTimer(p.opt.KillGrace)
	defer deadline.Stop()
	for {
		left := 0
		for _, in := range insts {
			if err := p.Delete(ctx, in.ID); err == nil {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop local agents: %d still running: %w", left, ctx.Err())
		case <-deadline.C:
			p.mu.Lock()
			for _, in := range insts {
				if r, err := p.read(in.ID); err == nil {
					_ = syscall.Kill(-r.PID, syscall.SIGKILL)
				}
			}
			p.mu.Unlock()
		case <-t.C:
		}
	}
}

// Wait waits until the process of instance id is gone or ctx ends.
func (p *Provider) Wait(ctx context.Context, id string) error {
	p.mu.Lock()
	ch := p.exited[id]
	p.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("wait for agent %s: %w", id, ctx.Err())
		}
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		p.mu.Lock()
		r, err := p.read(id)
		gone := err != nil || !p.alive(r)
		p.mu.Unlock()
		if gone {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("wait for agent %s: %w", id, ctx.Err())
		}
	}
}

// PID returns the process id of a live instance (for tests and the demo).
func (p *Provider) PID(id string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, err := p.read(id)
	if err != nil {
		return 0, err
	}
	if !p.alive(r) {
		return 0, provider.NewError("get", provider.KindNotFound, "agent %s has exited", id)
	}
	return r.PID, nil
}

func (p *Provider) instance(r *record) *provider.Instance {
	st := provider.InstanceRunning
	switch {
	case !p.alive(r):
		st = provider.InstanceGone
	case r.TermSentAt != nil:
		st = provider.InstanceStopping
	}
	in := &provider.Instance{
		ID: r.ID, WorkerID: r.WorkerID, Pool: r.Pool, Placement: r.Placement,
		State: st, CreatedAt: r.StartedAt,
	}
	if st == provider.InstanceGone && r.TermSentAt == nil {
		// Nobody asked it to stop: the agent exited on its own.
		in.Exited = true
		if ch, ok := p.exited[r.ID]; ok {
			// Our child: its reaper records the status right after the
			// process ends; wait for it (bounded, it is a matter of
			// microseconds).
			select {
			case <-ch:
			case <-time.After(time.Second):
			}
		}
		p.statusMu.Lock()
		in.ExitDetail = p.status[r.ID]
		p.statusMu.Unlock()
		if in.ExitDetail == "" {
			// Started by an earlier server process: no exit status.
			in.ExitDetail = "exited (started by an earlier server; exit status unknown)"
		}
	}
	return in
}

func (p *Provider) statePath(id string) string { return filepath.Join(p.opt.Dir, id+".json") }

func (p *Provider) read(id string) (*record, error) {
	if strings.ContainsAny(id, "/\\\x00") || id == "" {
		return nil, provider.NewError("get", provider.KindNotFound, "no local instance %q", id)
	}
	b, err := os.ReadFile(p.statePath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, provider.NewError("get", provider.KindNotFound, "no local instance %q", id)
	}
	if err != nil {
		return nil, &provider.Error{Op: "get", Kind: provider.KindTransient, Message: "read state", Err: err}
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, &provider.Error{Op: "get", Kind: provider.KindTransient, Message: "decode state " + id, Err: err}
	}
	if r.Cluster != p.opt.Cluster {
		return nil, provider.NewError("get", provider.KindNotFound, "local instance %q belongs to cluster %q", id, r.Cluster)
	}
	return &r, nil
}

func (p *Provider) readAll() ([]*record, error) {
	matches, err := filepath.Glob(filepath.Join(p.opt.Dir, "local-*.json"))
	if err != nil {
		return nil, err
	}
	var out []*record
	for _, m := range matches {
		id := strings.TrimSuffix(filepath.Base(m), ".json")
		r, err := p.read(id)
		if err != nil {
			if errors.Is(err, provider.ErrNotFound) {
				continue
			}
			p.log.Warn("skipping unreadable state file", "file", m, "err", err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// write replaces a state file atomically.
func (p *Provider) write(r *record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := p.statePath(r.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.statePath(r.ID))
}

// agentEnv is the server's environment without Drover's own settings and
// secrets (the operator token, database URL, API keys), plus the pool's
// environment, the request's (DROVER_SERVER, DROVER_WORKER_ID,
// DROVER_TOKEN), the instance id and the GPU assignment.
func agentEnv(base []string, poolEnv, reqEnv map[string]string, id string, gpu *int) []string {
	env := make([]string, 0, len(base)+len(poolEnv)+len(reqEnv)+2)
	for _, kv := range base {
		if strings.HasPrefix(kv, "DROVER_") {
			continue
		}
		env = append(env, kv)
	}
	for _, m := range []map[string]string{poolEnv, reqEnv} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			env = append(env, k+"="+m[k])
		}
	}
	env = append(env, "DROVER_INSTANCE_ID="+id)
	if gpu != nil {
		env = append(env, "CUDA_VISIBLE_DEVICES="+strconv.Itoa(*gpu))
	}
	return env
}
