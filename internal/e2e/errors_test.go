package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
)

// What a user sees for bad input and bad states, end to end through HTTP
// and the CLI: each message names the field or the id, once, and nothing
// changes.
func TestUserFacingErrors(t *testing.T) {
	e := newEnv(t, envOpts{agents: 1, heartbeat: 200 * time.Millisecond, heartbeatTimeout: 3 * time.Second, killGrace: 5 * time.Second})
	ctx := context.Background()
	cliEnv := []string{"DROVER_SERVER=" + e.cfg.PublicURL, "DROVER_TOKEN=" + e.cfg.Auth.OperatorToken}

	t.Run("unknown pool", func(t *testing.T) {
		_, err := e.c.Submit(ctx, &wire.SubmitRequest{Type: "e2e", Pool: "no-such-pool"})
		if client.StatusOf(err) != 400 || !strings.Contains(err.Error(), `pool: "no-such-pool" is not a pool of this server; known pools: default`) {
			t.Errorf("submit to an unknown pool: %v", err)
		}
		_, err = e.c.SubmitBatch(ctx, []wire.SubmitRequest{{Type: "e2e"}, {Type: "e2e", Pool: "gpu-big"}})
		if client.StatusOf(err) != 400 || !strings.Contains(err.Error(), `tasks[1].pool: "gpu-big" is not a pool`) {
			t.Errorf("batch submit to an unknown pool: %v", err)
		}
		if n := len(e.allTasks()); n != 0 {
			t.Errorf("rejected submits wrote %d tasks", n)
		}
	})

	t.Run("batch dependency on a later task", func(t *testing.T) {
		_, err := e.c.SubmitBatch(ctx, []wire.SubmitRequest{{Type: "e2e", DependsOn: []string{"#1"}}, {Type: "e2e"}})
		if err == nil || !strings.Contains(err.Error(), "tasks[0].depends_on[0]: #1 names a later task of the batch; the first task (#0) can depend only on existing tasks") ||
			strings.Contains(err.Error(), "#-1") {
			t.Errorf("batch with #0 depending on #1: %v", err)
		}
	})

	t.Run("cancel a finished task reads once", func(t *testing.T) {
		id := e.submit(map[string]any{"i": 2})[0]
		eventually(t, 60*time.Second, "task succeeded", func() (bool, string) {
			tk := e.task(id)
			return tk.State == core.TaskSucceeded, string(tk.State)
		})
		r := drover(t, e.dir, cliEnv, "", "tasks", "cancel", id.String())
		want := fmt.Sprintf("drover: cancel task %s: task is already succeeded (409 conflict)\n", id)
		if r.code == 0 || r.stderr != want {
			t.Errorf("drover cancel of a finished task: exit %d, stderr %q, want %q", r.code, r.stderr, want)
		}
		if tk := e.task(id); tk.State != core.TaskSucceeded {
			t.Errorf("task is %s after the rejected cancel", tk.State)
		}
	})

	t.Run("dependency failed names the dependency", func(t *testing.T) {
		gate := filepath.Join(e.dir, "gate")
		if err := syscall.Mkfifo(gate, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { releaseGate(gate) })
		b, _ := json.Marshal(map[string]any{"i": 5, "gate": gate})
		res, err := e.c.SubmitBatch(ctx, []wire.SubmitRequest{{Type: "e2e", Params: b}, {Type: "e2e", DependsOn: []string{"#0"}}})
		if err != nil {
			t.Fatal(err)
		}
		dep, child := res[0].Task.ID, res[1].Task.ID
		e.waitRunning(dep)
		if r := drover(t, e.dir, cliEnv, "", "tasks", "cancel", dep.String()); r.code != 0 {
			t.Fatalf("cancel: %s", r.all())
		}
		eventually(t, 30*time.Second, "dependent failed", func() (bool, string) {
			tk := e.task(child)
			return tk.State == core.TaskFailed, string(tk.State)
		})
		if got, want := e.task(child).Error, "dependency failed: task "+dep.String()+" did not succeed"; got != want {
			t.Errorf("dependent's error %q, want %q", got, want)
		}
	})

	t.Run("task JSON durations in seconds", func(t *testing.T) {
		secs := 90.0
		res, err := e.c.Submit(ctx, &wire.SubmitRequest{Type: "e2e", TimeoutS: &secs, Params: json.RawMessage(`{"i":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		r := drover(t, e.dir, cliEnv, "", "tasks", res.Task.ID.String(), "--json")
		var m map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
			t.Fatalf("tasks --json: %v\n%s", err, r.all())
		}
		if _, ns := m["timeout"]; ns || m["timeout_s"] != secs {
			t.Errorf("task JSON timeout: %s", r.stdout)
		}
		r = drover(t, e.dir, cliEnv, "", "tasks", "--json", "--limit", "5")
		if !strings.Contains(r.stdout, `"timeout_s": 21600`) && !strings.Contains(r.stdout, `"timeout_s":21600`) {
			t.Errorf("task list JSON lacks the default timeout_s: %s", r.stdout)
		}
	})

	t.Run("timeout reads the documented message", func(t *testing.T) {
		gate := filepath.Join(e.dir, "gate-timeout")
		if err := syscall.Mkfifo(gate, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { releaseGate(gate) })
		b, _ := json.Marshal(map[string]any{"i": 6, "gate": gate})
		one, timeout := 1, wire.Duration(time.Second)
		res, err := e.c.Submit(ctx, &wire.SubmitRequest{Type: "e2e", Params: b, MaxAttempts: &one, Timeout: &timeout})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "timed-out task failed", func() (bool, string) {
			tk := e.task(res.Task.ID)
			return tk.State == core.TaskFailed, string(tk.State)
		})
		if got := e.task(res.Task.ID).Error; got != core.ReasonTimeout {
			t.Errorf("timed-out task's error %q, want the documented %q", got, core.ReasonTimeout)
		}
	})

	t.Run("bad task id", func(t *testing.T) {
		r := drover(t, e.dir, cliEnv, "", "tasks", "cancel", "not-a-uuid")
		if r.code == 0 || !strings.Contains(r.stderr, "task id") {
			t.Errorf("cancel not-a-uuid: exit %d %q", r.code, r.stderr)
		}
	})
}
