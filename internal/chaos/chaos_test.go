//go:build chaos

package chaos

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The short chaos run that CI runs (.ci/run, after the main suite):
//
//	go test -tags chaos -count=1 -run TestChaosShort ./internal/chaos/
//
// Three replicas on a private PostgreSQL cluster (started and restarted by
// the harness; the PostgreSQL server binaries must be installed), four
// agents, 400 tasks, one of each fault. It fails, never skips, when it
// cannot run.
func TestChaosShort(t *testing.T) {
	if _, err := FindPGBin(); err != nil {
		t.Fatalf("the chaos run needs the PostgreSQL server binaries for its private cluster: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "drover")
	build := exec.Command("go", "build", "-o", bin, "./cmd/drover")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build drover: %v\n%s", err, out)
	}
	var progress bytes.Buffer
	cfg := Config{
		Tasks: 400, Agents: 4, Replicas: 3, Seed: 7,
		Duration:   5 * time.Minute,
		HandlerMin: 200 * time.Millisecond, HandlerMax: time.Second,
		AgentKillEvery: 3 * time.Second,
		LeaderKills:    1, Pauses: 1, PGRestarts: 1,
		CalmFraction: 0.1,
		// A shorter lease keeps the pause (SIGSTOP past the lease) short.
		LeaderTTL: 6 * time.Second,
		Binary:    bin,
		Dir:       t.TempDir(),
		Progress:  &progress,
	}
	res, err := Run(t.Context(), cfg)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	res.Print(&table)
	t.Logf("result:\n%s", table.String())
	for _, f := range res.Failures {
		t.Errorf("invariant broken: %s", f)
	}
	if res.LeaderKills != 1 || res.Pauses != 1 || res.PGRestarts != 1 || res.AgentKills == 0 {
		t.Errorf("faults injected: %d leader kills, %d pauses, %d PostgreSQL restarts, %d agent kills; want 1, 1, 1 and some", res.LeaderKills, res.Pauses, res.PGRestarts, res.AgentKills)
	}
	if res.PausesWithoutTakeover != 0 {
		t.Errorf("%d leader pauses (SIGSTOP past the lease) without a takeover: the fleet had no leader", res.PausesWithoutTakeover)
	}
	if res.Reruns.InjectedFailure == 0 {
		t.Errorf("no injected handler failure was retried (%+v)", res.Reruns)
	}
	if res.Resubmitted == 0 {
		t.Error("no idempotency key was re-submitted")
	}
	if t.Failed() {
		for i := range cfg.Replicas {
			_, logs := replicaPaths(cfg.Dir, i)
			if b, err := os.ReadFile(logs); err == nil {
				t.Logf("%s (last lines):\n%s", logs, tail(b, 40))
			}
		}
	}
}

func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
