package fakerunpod

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// AgentOptions start a real agent process for each RUNNING pod.
type AgentOptions struct {
	// Binary is the drover executable; Args default to ["agent", "--no-gpu"].
	Binary string
	Args   []string
	// LogDir receives <pod id>.log per agent (required).
	LogDir string
	// Env is added to every agent's environment (after the pod's env).
	Env map[string]string
	// KillGrace is SIGTERM → SIGKILL on delete (default 5 s).
	KillGrace time.Duration
}

type agents struct {
	opt AgentOptions
	log *slog.Logger

	mu    sync.Mutex
	procs map[string]*exec.Cmd
	wg    sync.WaitGroup
}

func newAgents(opt AgentOptions, log *slog.Logger) *agents {
	if len(opt.Args) == 0 {
		opt.Args = []string{"agent", "--no-gpu"}
	}
	if opt.KillGrace <= 0 {
		opt.KillGrace = 5 * time.Second
	}
	return &agents{opt: opt, log: log, procs: map[string]*exec.Cmd{}}
}

// start runs the agent of pod id with the pod's env plus what RunPod sets
// in every pod (RUNPOD_POD_ID).
func (a *agents) start(id string, env map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.procs[id]; ok {
		return
	}
	cmd := exec.Command(a.opt.Binary, a.opt.Args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "RUNPOD_POD_ID=" + id}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range a.opt.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logf, err := os.OpenFile(filepath.Join(a.opt.LogDir, id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		a.log.Error("open agent log", "pod", id, "err", err)
		return
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		a.log.Error("start agent", "pod", id, "err", err)
		return
	}
	logf.Close()
	a.procs[id] = cmd
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		_ = cmd.Wait()
	}()
}

// stop sends SIGTERM to the agent's process group (the container is being
// stopped), then SIGKILL after the grace.
func (a *agents) stop(id string) { a.signal(id, false) }

// kill sends SIGKILL at once (the machine vanished).
func (a *agents) kill(id string) { a.signal(id, true) }

func (a *agents) signal(id string, now bool) {
	a.mu.Lock()
	cmd := a.procs[id]
	delete(a.procs, id)
	a.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	pgid := -cmd.Process.Pid
	if now {
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		return
	}
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	go func() {
		time.Sleep(a.opt.KillGrace) // a real container's stop grace
		_ = syscall.Kill(pgid, syscall.SIGKILL)
	}()
}

// stopAll kills every agent and waits for them.
func (a *agents) stopAll() {
	a.mu.Lock()
	ids := make([]string, 0, len(a.procs))
	for id := range a.procs {
		ids = append(ids, id)
	}
	a.mu.Unlock()
	for _, id := range ids {
		a.kill(id)
	}
	a.wg.Wait()
}

// Running returns how many agent processes the fake has running.
func (s *Server) Running() int {
	if s.agents == nil {
		return 0
	}
	s.agents.mu.Lock()
	defer s.agents.mu.Unlock()
	return len(s.agents.procs)
}
