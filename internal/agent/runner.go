package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// Handler exit codes (see docs/agent.md).
const (
	// ExitFinal is the exit code a handler uses to say "this task can never
	// succeed, do not retry it" (bad params, unsupported input). Every other
	// non-zero exit, and death by a signal, is a retryable failure.
	ExitFinal = 3
	// DefaultKillGrace is how long a handler has between SIGTERM and SIGKILL.
	DefaultKillGrace = 10 * time.Second
	// StderrTailBytes is how much of the end of stderr a failure carries.
	StderrTailBytes = 4 << 10
	// MaxLogLineBytes caps one shipped log line; longer lines are cut.
	MaxLogLineBytes = 16 << 10
	// ProgressPrefix starts a stdout line that reports progress:
	// "DROVER_PROGRESS 0.42 optional message". Such lines are not logged.
	ProgressPrefix = "DROVER_PROGRESS "
	// MaxProgressMessageBytes caps a progress message (the API's limit is
	// 1 KiB).
	MaxProgressMessageBytes = 1000
)

// Job is one task attempt for the runner.
type Job struct {
	TaskID  string
	Type    string
	Attempt int
	Params  json.RawMessage
	// Timeout bounds the attempt; 0 means no limit.
	Timeout time.Duration
	// Log receives every stdout/stderr line (stream "stdout" or "stderr").
	// It must not block for long; nil discards lines.
	Log func(stream, line string)
	// Progress receives progress reports from DROVER_PROGRESS lines.
	Progress func(fraction float64, msg string)
	// OutputDir, when set, is passed as $DROVER_OUTPUT_DIR: the fresh
	// directory of this attempt's output files.
	OutputDir string
}

// Outcome is how an attempt ended.
type Outcome struct {
	// OK is true when the handler exited 0 with a valid result.
	OK bool
	// Result is the handler's JSON object result (OK only).
	Result json.RawMessage
	// Error describes the failure: exit status plus stderr tail.
	Error string
	// Retryable is false for exit code ExitFinal and for invalid results.
	Retryable bool
	// Cancelled is true when the context was cancelled (lease lost, stop):
	// nothing must be reported for such an attempt.
	Cancelled bool
	// TimedOut is true when the attempt exceeded Job.Timeout.
	TimedOut bool
	// ExitCode is the handler's exit code, or -1 if it died by a signal.
	ExitCode int
	// Unkillable is true when the handler did not exit within the grace
	// after SIGKILL (a stuck task).
	Unkillable bool
}

// Runner runs one handler process per task: `sh -c COMMAND` with the task's
// params on stdin. It is safe for concurrent use.
type Runner struct {
	// Command is the handler command line, run with `sh -c`.
	Command string
	// Dir is the working directory ("" = the agent's).
	Dir string
	// Env is extra environment (KEY=VALUE) on top of the agent's own
	// environment, from which DROVER_TOKEN is always removed.
	Env []string
	// KillGrace is the time between SIGTERM and SIGKILL (DefaultKillGrace).
	KillGrace time.Duration
	// TempDir holds result files ("" = os.TempDir()).
	TempDir string
}

// Run runs job to completion, timeout or cancellation of ctx.
func (r *Runner) Run(ctx context.Context, job Job) Outcome {
	grace := r.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	resFile, err := os.CreateTemp(r.TempDir, "drover-result-*.json")
	if err != nil {
		return Outcome{Error: fmt.Sprintf("create result file: %v", err), Retryable: true, ExitCode: -1}
	}
	resPath := resFile.Name()
	resFile.Close()
	defer os.Remove(resPath)

	cmd := exec.Command("/bin/sh", "-c", handlerWrapper, "drover-handler", r.Command)
	cmd.Dir = r.Dir
	cmd.Env = append(handlerEnv(os.Environ()), r.Env...)
	cmd.Env = append(cmd.Env,
		"DROVER_TASK_ID="+job.TaskID,
		"DROVER_TASK_TYPE="+job.Type,
		"DROVER_ATTEMPT="+strconv.Itoa(job.Attempt),
		"DROVER_RESULT_FILE="+resPath,
	)
	if job.OutputDir != "" {
		cmd.Env = append(cmd.Env, "DROVER_OUTPUT_DIR="+job.OutputDir)
	}
	cmd.SysProcAttr = handlerSysProcAttr()
	params := job.Params
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	cmd.Stdin = bytes.NewReader(append(append([]byte(nil), params...), '\n'))

	outR, outW, err := os.Pipe()
	if err != nil {
		return Outcome{Error: fmt.Sprintf("create stdout pipe: %v", err), Retryable: true, ExitCode: -1}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return Outcome{Error: fmt.Sprintf("create stderr pipe: %v", err), Retryable: true, ExitCode: -1}
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		return Outcome{Error: fmt.Sprintf("start handler: %v", err), Retryable: true, ExitCode: -1}
	}
	outW.Close()
	errW.Close()
	pgid := cmd.Process.Pid

	var (
		wg       sync.WaitGroup
		lastLine string
		tail     = &tailBuffer{max: StderrTailBytes}
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		readLines(outR, func(line string) {
			if strings.HasPrefix(line, ProgressPrefix) {
				if job.Progress != nil {
					if f, msg, ok := parseProgress(line); ok {
						job.Progress(f, msg)
					}
				}
				return
			}
			if strings.TrimSpace(line) != "" {
				lastLine = line
			}
			if job.Log != nil {
				job.Log("stdout", clip(line))
			}
		})
	}()
	go func() {
		defer wg.Done()
		readLines(errR, func(line string) {
			tail.Write(line)
			if job.Log != nil {
				job.Log("stderr", clip(line))
			}
		})
	}()

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var timeoutC <-chan time.Time
	if job.Timeout > 0 {
		t := time.NewTimer(job.Timeout)
		defer t.Stop()
		timeoutC = t.C
	}
	var (
		waitErr    error
		cancelled  bool
		timedOut   bool
		unkillable bool
	)
	select {
	case waitErr = <-exited:
	case <-ctx.Done():
		cancelled = true
	case <-timeoutC:
		timedOut = true
	}
	if cancelled || timedOut {
		// A handler that exited at the same instant has finished: keep its
		// outcome rather than calling it cancelled.
		select {
		case waitErr = <-exited:
			cancelled, timedOut = false, false
		default:
			waitErr, unkillable = terminate(pgid, exited, grace)
		}
	}
	// The leader has exited: remove whatever it left behind in its group so
	// that nothing keeps the output pipes open.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	// A descendant that left the group (setsid, double fork) may still hold
	// the pipes open: give the readers the kill grace to drain what was
	// written, then close the pipes so that the slot is never held forever.
	readersDone := make(chan struct{})
	go func() { wg.Wait(); close(readersDone) }()
	drain := time.NewTimer(max(grace, time.Second))
	select {
	case <-readersDone:
	case <-drain.C:
		outR.Close()
		errR.Close()
		<-readersDone
	}
	drain.Stop()
	outR.Close()
	errR.Close()

	out := Outcome{ExitCode: exitCode(waitErr), Unkillable: unkillable}
	switch {
	case cancelled:
		out.Cancelled = true
		out.Error = "cancelled"
		return out
	case timedOut:
		out.TimedOut = true
		out.Retryable = true
		// The same message as when the server's check notices first: the
		// handler's stderr is in the task's logs.
		out.Error = core.ReasonTimeout
		return out
	case waitErr != nil:
		out.Retryable = out.ExitCode != ExitFinal
		out.Error = fmt.Sprintf("handler %s%s", describeExit(waitErr), tailSuffix(tail.String()))
		return out
	}
	res, err := readResult(resPath, lastLine)
	if err != nil {
		out.Error = err.Error() + tailSuffix(tail.String())
		out.Retryable = false
		return out
	}
	out.OK = true
	out.Result = res
	return out
}

// handlerWrapper runs the handler command ($1) in a subshell and waits for
// it. It exists so that a handler outlives no agent: the kernel sends the
// wrapper SIGUSR2 when the agent dies (Pdeathsig, Linux), and the wrapper
// then SIGKILLs its whole process group, handler and grandchildren
// included. SIGTERM and SIGINT (from a cancel or timeout, sent to the whole
// group) end neither the wrapper nor the subshell that runs the handler
// command: both keep waiting, so that the handler gets its whole grace
// period however its command is written (`cmd args`, `exec cmd args`,
// `sh -c '…'`). The subshell catches the signals rather than ignoring
// them, so the handler it starts gets the default actions back on exec.
// The handler's stdin is passed through fd 3 because an asynchronous list
// otherwise reads /dev/null.
const handlerWrapper = `trap 'kill -KILL 0' USR2
trap ':' TERM INT
exec 3<&0
( trap - USR2; trap ':' TERM INT; exec 3<&-; eval "$1" ) <&3 &
pid=$!
exec 3<&-
while :; do
	wait "$pid"; st=$?
	kill -0 "$pid" 2>/dev/null || break
done
exit "$st"`

// terminate sends SIGTERM to the process group, then SIGKILL after grace,
// and waits up to another grace for the exit.
func terminate(pgid int, exited <-chan error, grace time.Duration) (error, bool) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-exited:
		return err, false
	case <-t.C:
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	t.Reset(grace)
	select {
	case err := <-exited:
		return err, false
	case <-t.C:
		return errors.New("handler did not exit after SIGKILL"), true
	}
}

// readResult picks the result: the result file if non-empty, else the last
// non-empty stdout line if it is a JSON object, else {}.
func readResult(path, lastLine string) (json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read result file: %w", err)
	}
	if len(bytes.TrimSpace(b)) > 0 {
		if len(b) > core.MaxResultBytes {
			return nil, fmt.Errorf("result file is %d bytes, over the limit of %d", len(b), core.MaxResultBytes)
		}
		if !isJSONObject(b) {
			return nil, errors.New("result file $DROVER_RESULT_FILE does not hold a JSON object")
		}
		return compact(b), nil
	}
	line := []byte(strings.TrimSpace(lastLine))
	if len(line) <= core.MaxResultBytes && isJSONObject(line) {
		return compact(line), nil
	}
	return json.RawMessage("{}"), nil
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil
}

func compact(b []byte) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return json.RawMessage(bytes.TrimSpace(b))
	}
	return buf.Bytes()
}

func parseProgress(line string) (float64, string, bool) {
	rest := strings.TrimSpace(strings.TrimPrefix(line, ProgressPrefix))
	num, msg, _ := strings.Cut(rest, " ")
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f > 1 {
		return 0, "", false
	}
	msg = strings.TrimSpace(msg)
	if len(msg) > MaxProgressMessageBytes {
		msg = msg[:MaxProgressMessageBytes]
	}
	return f, msg, true
}

// handlerEnv is the agent's environment without the worker's credentials:
// a handler never sees the worker token.
func handlerEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if strings.HasPrefix(kv, "DROVER_TOKEN=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func describeExit(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		if c := ee.ExitCode(); c > 128 && c < 160 {
			return fmt.Sprintf("killed by signal %s (exit code %d)", syscall.Signal(c-128), c)
		}
		return fmt.Sprintf("exited with code %d", ee.ExitCode())
	}
	return err.Error()
}

func tailSuffix(tail string) string {
	tail = strings.TrimSpace(tail)
	if tail == "" {
		return ""
	}
	return ": " + tail
}

func clip(line string) string {
	if len(line) > MaxLogLineBytes {
		return line[:MaxLogLineBytes] + "…"
	}
	return line
}

// readLines calls fn for each line of r. Lines up to core.MaxResultBytes are
// delivered whole; longer ones are cut there.
func readLines(r io.Reader, fn func(string)) {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(chunk) > 0 && len(buf) <= core.MaxResultBytes {
			buf = append(buf, chunk...)
		}
		if err != nil {
			if len(buf) > 0 {
				fn(string(buf))
			}
			return
		}
		if !isPrefix {
			fn(string(buf))
			buf = buf[:0]
		}
	}
}

// tailBuffer keeps the last max bytes of the lines written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, line...)
	t.b = append(t.b, '\n')
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
