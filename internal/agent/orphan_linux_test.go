package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary play an agent process for
// TestHandlerDiesWithAgent.
func TestMain(m *testing.M) {
	if cmd := os.Getenv("AGENT_TEST_RUN_HANDLER"); cmd != "" {
		r := &Runner{Command: cmd}
		r.Run(context.Background(), Job{TaskID: "t"})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// processGone reports whether pid no longer runs (absent or a zombie).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// TestHandlerDiesWithAgent SIGKILLs an "agent" whose handler forked a
// grandchild and checks that the grandchild does not outlive it.
func TestHandlerDiesWithAgent(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "pid")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The handler starts a grandchild that reports its pid and sleeps.
	handler := `sh -c 'echo $$ > ` + fifo + `; exec sleep 1000'; echo unreachable`
	agent := exec.Command(os.Args[0], "-test.run=^$")
	agent.Env = append(os.Environ(), "AGENT_TEST_RUN_HANDLER="+handler)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fifo) // blocks until the grandchild wrote its pid
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if processGone(pid) {
		t.Fatal("grandchild not running")
	}
	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !processGone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("handler grandchild %d outlived its killed agent", pid)
		}
		<-tick.C
	}
}
