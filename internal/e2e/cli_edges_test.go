package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The CLI's rough edges a new user hit, run as the user runs them.
func TestCLIEdges(t *testing.T) {
	e := newEnv(t, envOpts{agents: 1, heartbeat: 200 * time.Millisecond, heartbeatTimeout: 3 * time.Second, killGrace: 5 * time.Second})
	env := []string{"DROVER_SERVER=" + e.cfg.PublicURL, "DROVER_TOKEN=" + e.cfg.Auth.OperatorToken}
	count := func() int { return len(e.allTasks()) }

	t.Run("submit --wait writes no control characters when stderr is not a terminal", func(t *testing.T) {
		r := drover(t, e.dir, env, "", "submit", "e2e", "--params", `{"i":4}`, "--wait")
		if r.code != 0 {
			t.Fatalf("submit --wait: %s", r.all())
		}
		if strings.ContainsAny(r.stderr, "\r\x1b") {
			t.Errorf("stderr has control characters: %q", r.stderr)
		}
		if !strings.Contains(r.stderr, "succeeded") || !strings.Contains(r.stdout, `"sq":16`) {
			t.Errorf("submit --wait output: %q / %q", r.stdout, r.stderr)
		}
	})

	t.Run("--limit out of range is rejected", func(t *testing.T) {
		for _, args := range [][]string{
			{"tasks", "--limit", "0"}, {"tasks", "--limit", "1001"},
			{"events", "--limit", "0"}, {"logs", "--task", uuid.NewString(), "--limit", "0"},
		} {
			r := drover(t, e.dir, env, "", args...)
			if r.code == 0 || !strings.Contains(r.stderr, "--limit") || !strings.Contains(r.stderr, "must be between 1 and") {
				t.Errorf("drover %v: exit %d %q", args, r.code, r.stderr)
			}
		}
	})

	t.Run("submit --max-lost", func(t *testing.T) {
		r := drover(t, e.dir, env, "", "submit", "e2e", "--params", `{"i":1}`, "--max-lost", "7")
		id, err := uuid.Parse(strings.TrimSpace(r.stdout))
		if r.code != 0 || err != nil {
			t.Fatalf("submit --max-lost: %s", r.all())
		}
		if tk := e.task(id); tk.MaxLost != 7 {
			t.Errorf("max_lost = %d, want 7", tk.MaxLost)
		}
	})

	t.Run("submit --batch", func(t *testing.T) {
		file := filepath.Join(e.dir, "tasks.jsonl")
		body := `{"type":"e2e","params":{"i":10}}

{"type":"e2e","params":{"i":11},"priority":5}
{"type":"e2e","params":{"i":12},"depends_on":["#0"]}
`
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		r := drover(t, e.dir, env, "", "submit", "--batch", file)
		ids := strings.Fields(r.stdout)
		if r.code != 0 || len(ids) != 3 {
			t.Fatalf("submit --batch: %s", r.all())
		}
		for i, s := range ids {
			id, err := uuid.Parse(s)
			if err != nil {
				t.Fatalf("line %d of the output is not an id: %q", i, s)
			}
			if tk := e.task(id); string(tk.Params) != `{"i":`+[]string{"10", "11", "12"}[i]+`}` {
				t.Errorf("task %d params %s", i, tk.Params)
			}
		}
		if tk := e.task(uuid.MustParse(ids[2])); len(tk.DependsOn) != 1 || tk.DependsOn[0].String() != ids[0] {
			t.Errorf("#0 dependency: %v", tk.DependsOn)
		}
		r = drover(t, e.dir, env, `{"type":"e2e","params":{"i":20}}`+"\n", "submit", "--batch", "-")
		if _, err := uuid.Parse(strings.TrimSpace(r.stdout)); r.code != 0 || err != nil {
			t.Errorf("submit --batch - (stdin): %s", r.all())
		}
	})

	t.Run("submit --batch fails whole on a bad line", func(t *testing.T) {
		before := count()
		cases := []struct{ body, want string }{
			{`{"type":"e2e"}` + "\n" + `{"type":"e2e","priorty":3}` + "\n", `line 2: not a JSON task: unknown field "priorty"`},
			{`{"type":"e2e"}` + "\n\n" + `{"type":"e2e",` + "\n", "line 3: not a JSON task"},
			{`{"type":"e2e"}` + "\n" + `{"params":{}}` + "\n", "line 2: type: is required"},
			{`{"type":"e2e"}` + "\n" + `{"type":"e2e"}` + "\n\n" + `{"type":"e2e","pool":"nope"}` + "\n", `line 4: pool: "nope" is not a pool of this server; known pools: default (400 invalid)`},
			{`{"type":"e2e"}` + "\n" + `{"type":"e2e","max_attempts":0}` + "\n", "line 2: max_attempts:"},
		}
		for _, c := range cases {
			r := drover(t, e.dir, env, c.body, "submit", "--batch", "-")
			if r.code == 0 || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "nothing was submitted") || r.stdout != "" {
				t.Errorf("batch %q: exit %d, stdout %q, stderr %q; want %q", c.body, r.code, r.stdout, r.stderr, c.want)
			}
		}
		if n := count(); n != before {
			t.Errorf("bad batches wrote %d tasks", n-before)
		}
	})
}

// `drover demo --exit` removes its temporary directory unless --keep, and
// says where it is when kept.
func TestCLIDemoTempDir(t *testing.T) {
	tmp := t.TempDir()
	env := []string{"TMPDIR=" + tmp}
	r := drover(t, tmp, env, "", "demo", "--exit", "--tasks", "2", "--no-kill")
	if r.code != 0 {
		t.Fatalf("demo --exit: %s", r.all())
	}
	if m, _ := filepath.Glob(filepath.Join(tmp, "drover-demo-*")); len(m) != 0 {
		t.Errorf("demo --exit left %v behind:\n%s", m, r.stdout)
	}
	if !strings.Contains(r.stdout, "removed the demo's temporary directory") {
		t.Errorf("demo does not say it removed its directory:\n%s", r.stdout)
	}
	r = drover(t, tmp, env, "", "demo", "--exit", "--tasks", "2", "--no-kill", "--keep")
	m := regexp.MustCompile(`kept the demo's directory \(--keep\): (\S+)`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("demo --exit --keep: %s", r.all())
	}
	if _, err := os.Stat(filepath.Join(m[1], "drover.db")); err != nil {
		t.Errorf("kept directory %s: %v", m[1], err)
	}
}
