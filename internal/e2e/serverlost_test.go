package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
)

// A `drover serve` that shuts down for good: it says what happens to its
// local agents, and they (real processes) kill their handlers and exit
// on their own after server_lost_timeout, instead of retrying forever.
func TestAgentsExitWhenServerIsGone(t *testing.T) {
	e := newEnv(t, envOpts{agents: 2, heartbeat: 200 * time.Millisecond, heartbeatTimeout: 2 * time.Second,
		killGrace: 5 * time.Second, serveProcess: true, serverLostTimeout: 3 * time.Second})
	gate := filepath.Join(e.dir, "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseGate(gate) })
	id := e.submit(map[string]any{"i": 1, "gate": gate})[0]
	e.waitRunning(id)
	e.waitAtGate(id)
	eventually(t, 60*time.Second, "two ready workers", func() (bool, string) {
		ws, err := e.c.Workers(context.Background(), wire.WorkerFilter{Live: true})
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, w := range ws {
			if w.State == core.WorkerReady {
				n++
			}
		}
		return n == 2, fmt.Sprintf("%d ready", n)
	})
	recs, _ := filepath.Glob(filepath.Join(e.cfg.Providers.Local.Dir, "*.json"))
	if len(recs) != 2 {
		t.Fatalf("agent records: %v", recs)
	}

	// A clean shutdown: SIGTERM.
	if err := e.proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := e.proc.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
	serveLog, _ := os.ReadFile(filepath.Join(e.dir, fmt.Sprintf("serve-%d.log", e.procN)))
	if !strings.Contains(string(serveLog), "drover serve shut down; 2 local agent(s) keep running") ||
		!strings.Contains(string(serveLog), "server_lost_timeout (3s)") {
		t.Errorf("serve's shutdown line:\n%s", serveLog)
	}

	eventually(t, 60*time.Second, "agents exited on their own", func() (bool, string) {
		logs, _ := filepath.Glob(filepath.Join(e.cfg.Providers.Local.Dir, "*.log"))
		done := 0
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			if strings.Contains(string(b), "drover: agent: no answer from the server for server_lost_timeout") {
				done++
			}
		}
		return done == 2, fmt.Sprintf("%d of %d agents exited", done, len(logs))
	})
	// The handler held by an agent was killed with it: the gate has no
	// reader any more.
	eventually(t, 30*time.Second, "handler killed", func() (bool, string) {
		f, err := os.OpenFile(gate, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			f.Close()
			return false, "a handler still waits at the gate"
		}
		return true, ""
	})
}
