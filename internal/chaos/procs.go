package chaos

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// proc is one live process that belongs to the run's deployment: its
// environment carries DROVER_CLUSTER=<cluster> (agents, and the handlers
// and commands they start, inherit it).
type proc struct {
	PID int
	// Worker is the worker id of a `drover agent` process ("" for others).
	Worker string
	// Agent is true for the agent itself (not a handler it started).
	Agent bool
	// PPID is the parent's process id.
	PPID int
}

// clusterProcs lists the live (not zombie) processes whose environment
// names cluster.
func clusterProcs(cluster string) []proc {
	want := []byte("DROVER_CLUSTER=" + cluster)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		env, err := os.ReadFile(filepath.Join(dir, "environ"))
		if err != nil || !hasEnv(env, want) {
			continue
		}
		ppid, ok := liveParent(dir)
		if !ok {
			continue
		}
		p := proc{PID: pid, PPID: ppid}
		if cmd, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
			args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
			if len(args) > 1 && args[1] == "agent" {
				p.Agent = true
				for i, a := range args {
					if a == "--worker-id" && i+1 < len(args) {
						p.Worker = args[i+1]
					}
				}
			}
		}
		out = append(out, p)
	}
	// A child the agent has forked but not yet exec'd (its handler) still
	// shows the agent's command line: it is not a second agent.
	agents := map[int]string{}
	for _, p := range out {
		if p.Agent {
			agents[p.PID] = p.Worker
		}
	}
	for i, p := range out {
		if w, ok := agents[p.PPID]; ok && p.Agent && w == p.Worker {
			out[i].Agent, out[i].Worker = false, ""
		}
	}
	return out
}

func hasEnv(env, kv []byte) bool {
	for _, e := range bytes.Split(env, []byte{0}) {
		if bytes.Equal(e, kv) {
			return true
		}
	}
	return false
}

// liveParent returns the process's parent id, and false when the process
// has exited (a zombie not reaped yet, or gone).
func liveParent(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0, false
	}
	// pid (comm) S ppid ...: the state and the parent follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}
