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
		if err != nil || !hasEnv(env, want) || zombie(dir) {
			continue
		}
		p := proc{PID: pid}
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

// zombie reports whether the process has exited but was not reaped yet.
func zombie(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}
