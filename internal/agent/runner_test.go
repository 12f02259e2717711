package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// logSink collects handler log lines and signals when a line appears.
type logSink struct {
	mu    sync.Mutex
	lines []string
	seen  map[string]chan struct{}
	fired map[string]bool
}

func newLogSink(waitFor ...string) *logSink {
	s := &logSink{seen: map[string]chan struct{}{}, fired: map[string]bool{}}
	for _, w := range waitFor {
		s.seen[w] = make(chan struct{})
	}
	return s
}

func (s *logSink) log(stream, line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, stream+": "+line)
	if ch, ok := s.seen[line]; ok && !s.fired[line] {
		close(ch)
		s.fired[line] = true
	}
}

// wait returns a channel closed when line has been logged.
func (s *logSink) wait(line string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[line]
}

func (s *logSink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func run(t *testing.T, r *Runner, job Job) Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return r.Run(ctx, job)
}

func TestRunnerResults(t *testing.T) {
	t.Setenv("DROVER_TOKEN", "secret-token-value")
	cases := []struct {
		name      string
		cmd       string
		ok        bool
		result    string
		retryable bool
		errHas    string
		exit      int
	}{
		{
			name:   "last stdout line with params and env",
			cmd:    `p=$(cat); echo working; printf '{"params":%s,"id":"%s","type":"%s","attempt":%s,"tok":"%s"}\n\n' "$p" "$DROVER_TASK_ID" "$DROVER_TASK_TYPE" "$DROVER_ATTEMPT" "$DROVER_TOKEN"`,
			ok:     true,
			result: `{"params":{"n":7},"id":"t-1","type":"render","attempt":2,"tok":""}`,
		},
		{
			name:   "result file wins over stdout",
			cmd:    `echo '{"from":"stdout"}'; printf '{ "from" : "file" }' > "$DROVER_RESULT_FILE"`,
			ok:     true,
			result: `{"from":"file"}`,
		},
		{
			name:   "no json output gives empty object",
			cmd:    `echo done; echo '[1,2]'`,
			ok:     true,
			result: `{}`,
		},
		{
			name:      "non-zero exit is retryable with stderr tail",
			cmd:       `echo oops >&2; echo 'CUDA out of memory' >&2; exit 1`,
			retryable: true,
			errHas:    "exited with code 1: oops\nCUDA out of memory",
			exit:      1,
		},
		{
			name:   "exit 3 is final",
			cmd:    `echo 'bad params' >&2; exit 3`,
			errHas: "exited with code 3: bad params",
			exit:   3,
		},
		{
			name:   "invalid result file is final",
			cmd:    `echo 'not json' > "$DROVER_RESULT_FILE"`,
			errHas: "does not hold a JSON object",
		},
		{
			name:   "background child does not block completion",
			cmd:    `sleep 1000 & echo '{"ok":true}'`,
			ok:     true,
			result: `{"ok":true}`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &Runner{Command: c.cmd, TempDir: t.TempDir()}
			out := run(t, r, Job{TaskID: "t-1", Type: "render", Attempt: 2, Params: json.RawMessage(`{"n":7}`)})
			if out.OK != c.ok {
				t.Fatalf("OK = %v, want %v (outcome %+v)", out.OK, c.ok, out)
			}
			if c.ok && string(out.Result) != c.result {
				t.Fatalf("result = %s, want %s", out.Result, c.result)
			}
			if !c.ok {
				if out.Retryable != c.retryable {
					t.Errorf("retryable = %v, want %v", out.Retryable, c.retryable)
				}
				if !strings.Contains(out.Error, c.errHas) {
					t.Errorf("error = %q, want containing %q", out.Error, c.errHas)
				}
				if out.ExitCode != c.exit {
					t.Errorf("exit code = %d, want %d", out.ExitCode, c.exit)
				}
			}
		})
	}
}

func TestRunnerStderrTailIsBounded(t *testing.T) {
	r := &Runner{Command: `i=0; while [ $i -lt 300 ]; do echo "line $i of some fairly long stderr output" >&2; i=$((i+1)); done; exit 7`}
	out := run(t, r, Job{TaskID: "t"})
	if out.OK || !out.Retryable || out.ExitCode != 7 {
		t.Fatalf("outcome %+v", out)
	}
	if len(out.Error) > StderrTailBytes+100 {
		t.Fatalf("error is %d bytes", len(out.Error))
	}
	if !strings.Contains(out.Error, "line 299 of") || strings.Contains(out.Error, "line 0 of") {
		t.Fatalf("tail is not the end of stderr: %q", out.Error[:200])
	}
}

func TestRunnerLogsAndProgress(t *testing.T) {
	sink := newLogSink()
	var mu sync.Mutex
	var progress []float64
	var msgs []string
	r := &Runner{Command: `echo one; echo two >&2; echo 'DROVER_PROGRESS 0.5 halfway'; echo 'DROVER_PROGRESS 7 ignored'; echo '{"r":1}'`}
	out := run(t, r, Job{TaskID: "t", Log: sink.log, Progress: func(f float64, m string) {
		mu.Lock()
		progress = append(progress, f)
		msgs = append(msgs, m)
		mu.Unlock()
	}})
	if !out.OK || string(out.Result) != `{"r":1}` {
		t.Fatalf("outcome %+v", out)
	}
	got := strings.Join(sink.all(), "|")
	for _, want := range []string{"stdout: one", "stderr: two", `stdout: {"r":1}`} {
		if !strings.Contains(got, want) {
			t.Errorf("logs %q lack %q", got, want)
		}
	}
	if strings.Contains(got, "DROVER_PROGRESS") {
		t.Errorf("progress lines were logged: %q", got)
	}
	if len(progress) != 1 || progress[0] != 0.5 || msgs[0] != "halfway" {
		t.Errorf("progress = %v %v", progress, msgs)
	}
}

func TestRunnerLongResultLine(t *testing.T) {
	r := &Runner{Command: `printf '{"blob":"'; head -c 200000 /dev/zero | tr '\0' 'x'; printf '"}\n'`}
	out := run(t, r, Job{TaskID: "t"})
	if !out.OK || len(out.Result) != 200000+11 {
		t.Fatalf("ok=%v len=%d err=%s", out.OK, len(out.Result), out.Error)
	}
}

func TestRunnerCancelKillsProcessGroup(t *testing.T) {
	sink := newLogSink("started")
	r := &Runner{Command: `sleep 1000 & echo started; wait`, KillGrace: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Outcome, 1)
	go func() { done <- r.Run(ctx, Job{TaskID: "t", Log: sink.log}) }()
	<-sink.wait("started")
	cancel()
	out := <-done
	if !out.Cancelled || out.OK || out.Unkillable {
		t.Fatalf("outcome %+v", out)
	}
}

func TestRunnerSIGKILLAfterGrace(t *testing.T) {
	sink := newLogSink("started")
	// The handler ignores SIGTERM; only SIGKILL ends it.
	r := &Runner{Command: `trap '' TERM; echo started; while :; do sleep 1; done`, KillGrace: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Outcome, 1)
	go func() { done <- r.Run(ctx, Job{TaskID: "t", Log: sink.log}) }()
	<-sink.wait("started")
	cancel()
	out := <-done
	if !out.Cancelled || out.ExitCode != -1 || out.Unkillable {
		t.Fatalf("outcome %+v", out)
	}
}

func TestRunnerTimeout(t *testing.T) {
	r := &Runner{Command: `exec sleep 1000`, KillGrace: time.Second}
	out := run(t, r, Job{TaskID: "t", Timeout: 30 * time.Millisecond})
	if !out.TimedOut || !out.Retryable || out.OK || out.Cancelled {
		t.Fatalf("outcome %+v", out)
	}
	// The documented message, the same as the server's own timeout check.
	if out.Error != core.ReasonTimeout {
		t.Fatalf("error %q", out.Error)
	}
}

// A descendant that escapes the process group keeps the output pipes open
// after the handler exits; the runner still returns the handler's outcome
// (after at most the kill grace) instead of holding the slot forever.
func TestRunnerEscapedChildDoesNotHang(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "escaped.pid")
	r := &Runner{Command: `setsid sh -c 'echo $$ > ` + pidFile + `; exec sleep 300' & sleep 0.2; echo '{"ok":true}'`, KillGrace: 100 * time.Millisecond, TempDir: dir}
	out := run(t, r, Job{TaskID: "t"})
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	if out.Error != "" || string(out.Result) != `{"ok":true}` {
		t.Fatalf("outcome %+v, want the handler's result", out)
	}
}

// The kill grace holds for every way a handler command can be written: a
// handler that traps SIGTERM and needs 3 s to save its work gets them,
// whether the command is `cmd args`, `exec cmd args` or `sh -c '…'`.
func TestRunnerKillGraceEveryExecForm(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "handler.sh")
	body := `trap 'sleep 3; echo saved > "$MARK"; exit 0' TERM
echo started
while :; do sleep 0.05; done
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	forms := map[string]string{
		"cmd args":      "sh " + script,
		"exec cmd args": "exec sh " + script,
		"sh -c":         `sh -c 'trap "sleep 3; echo saved > \"\$MARK\"; exit 0" TERM; echo started; while :; do sleep 0.05; done'`,
	}
	for name, command := range forms {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mark := filepath.Join(t.TempDir(), "mark")
			sink := newLogSink("started")
			r := &Runner{Command: command, KillGrace: 10 * time.Second, Env: []string{"MARK=" + mark}, TempDir: t.TempDir()}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan Outcome, 1)
			go func() { done <- r.Run(ctx, Job{TaskID: "t", Log: sink.log}) }()
			select {
			case <-sink.wait("started"):
			case out := <-done:
				t.Fatalf("handler ended before it started: %+v", out)
			}
			cancel()
			out := <-done
			if !out.Cancelled || out.Unkillable {
				t.Fatalf("outcome %+v", out)
			}
			b, err := os.ReadFile(mark)
			if err != nil || strings.TrimSpace(string(b)) != "saved" {
				t.Fatalf("the handler was killed before it saved its work (mark %q, %v); logs %q", b, err, sink.all())
			}
		})
	}
}
