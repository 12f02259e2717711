package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// fakeServer is an in-memory implementation of the worker API that lets a
// test script the server's answers. It is not a database: it stands in for
// the HTTP server at the agent's boundary.
type fakeServer struct {
	mu         sync.Mutex
	claims     chan wire.ClaimedTask
	completed  map[uuid.UUID]json.RawMessage
	failed     map[uuid.UUID]wire.FailRequest
	completeEr []error // answers for the next Complete calls
	reply      wire.HeartbeatResponse
	beats      []wire.HeartbeatRequest
	logs       []wire.LogLineIn
	gpus       []wire.GPU
	reported   chan uuid.UUID
	beat       chan struct{}
}

func newFakeServer() *fakeServer {
	return &fakeServer{
		claims:    make(chan wire.ClaimedTask, 100),
		completed: map[uuid.UUID]json.RawMessage{},
		failed:    map[uuid.UUID]wire.FailRequest{},
		reported:  make(chan uuid.UUID, 100),
		beat:      make(chan struct{}, 1),
	}
}

func (f *fakeServer) Register(ctx context.Context, id uuid.UUID, req *wire.RegisterRequest) (*wire.RegisterResponse, error) {
	f.mu.Lock()
	f.gpus = req.GPUs
	f.mu.Unlock()
	return &wire.RegisterResponse{WorkerID: id.String(), Pool: "default", Concurrency: 2,
		HeartbeatInterval: wire.Duration(10 * time.Millisecond), ClaimWait: wire.Duration(100 * time.Millisecond)}, nil
}

func (f *fakeServer) Heartbeat(ctx context.Context, id uuid.UUID, req *wire.HeartbeatRequest) (*wire.HeartbeatResponse, error) {
	f.mu.Lock()
	f.beats = append(f.beats, *req)
	r := f.reply
	f.reply.LostLeases = nil
	f.mu.Unlock()
	select {
	case f.beat <- struct{}{}:
	default:
	}
	return &r, nil
}

// Claim long-polls like the real server: a task if one is queued within
// wait, else nothing when wait ends.
func (f *fakeServer) Claim(ctx context.Context, id uuid.UUID, max int, wait time.Duration) ([]wire.ClaimedTask, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case t := <-f.claims:
		return []wire.ClaimedTask{t}, nil
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeServer) Complete(ctx context.Context, workerID uuid.UUID, lease wire.Lease, result json.RawMessage) error {
	f.mu.Lock()
	var err error
	if len(f.completeEr) > 0 {
		err, f.completeEr = f.completeEr[0], f.completeEr[1:]
	}
	if err == nil {
		f.completed[lease.TaskID] = result
	}
	f.mu.Unlock()
	if err == nil || client.IsLeaseLost(err) {
		f.reported <- lease.TaskID
	}
	return err
}

func (f *fakeServer) Fail(ctx context.Context, workerID uuid.UUID, lease wire.Lease, msg string, retryable bool) (*wire.Task, error) {
	f.mu.Lock()
	f.failed[lease.TaskID] = wire.FailRequest{Error: msg, Retryable: retryable}
	f.mu.Unlock()
	f.reported <- lease.TaskID
	return &wire.Task{}, nil
}

func (f *fakeServer) Logs(ctx context.Context, id uuid.UUID, lines []wire.LogLineIn) error {
	f.mu.Lock()
	f.logs = append(f.logs, lines...)
	f.mu.Unlock()
	return nil
}

func (f *fakeServer) setReply(r wire.HeartbeatResponse) {
	f.mu.Lock()
	f.reply = r
	f.mu.Unlock()
}

func task(typ string, params string) wire.ClaimedTask {
	return wire.ClaimedTask{
		Task:       core.Task{ID: uuid.New(), Type: typ, Params: json.RawMessage(params), Attempt: 1},
		LeaseToken: uuid.New(),
	}
}

func startAgent(t *testing.T, f *fakeServer, cmd string) (*Agent, <-chan error) {
	t.Helper()
	a := New(f, Options{
		WorkerID: uuid.New(),
		Runner:   &Runner{Command: cmd, KillGrace: 2 * time.Second, TempDir: t.TempDir()},
		GPU:      StaticGPUs{{Index: 0, Name: "Test GPU", MemoryMiB: 1024}},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
	})
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	go func() { done <- a.Run(ctx) }()
	return a, done
}

func waitReported(t *testing.T, f *fakeServer, want uuid.UUID) {
	t.Helper()
	select {
	case got := <-f.reported:
		if got != want {
			t.Fatalf("reported %s, want %s", got, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("task %s never reported", want)
	}
}

// handlerScript echoes the params as the result, fails with exit 3 for
// {"fail":true}, and blocks until killed for {"block":true}.
const handlerScript = `p=$(cat); echo "log line for $DROVER_TASK_ID"
case "$p" in
*'"fail"'*) echo 'no such model' >&2; exit 3;;
*'"block"'*) echo blocking; exec sleep 1000;;
esac
printf '{"echo":%s}\n' "$p"`

func TestAgentRunsAndReports(t *testing.T) {
	f := newFakeServer()
	a, done := startAgent(t, f, handlerScript)
	ok, bad := task("echo", `{"n":1}`), task("echo", `{"fail":true}`)
	f.claims <- ok
	f.claims <- bad
	for range 2 {
		select {
		case <-f.reported:
		case <-time.After(20 * time.Second):
			t.Fatal("tasks not reported")
		}
	}
	a.Drain()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := string(f.completed[ok.ID]); got != `{"echo":{"n":1}}` {
		t.Errorf("result = %s", got)
	}
	fr := f.failed[bad.ID]
	if fr.Retryable || !strings.Contains(fr.Error, "exited with code 3: no such model") {
		t.Errorf("fail = %+v", fr)
	}
	var lines []string
	for _, l := range f.logs {
		lines = append(lines, l.TaskID+" "+l.Stream+" "+l.Line)
	}
	joined := strings.Join(lines, "\n")
	if !strings.Contains(joined, ok.ID.String()+" stdout log line for "+ok.ID.String()) ||
		!strings.Contains(joined, bad.ID.String()+" stderr no such model") {
		t.Errorf("logs:\n%s", joined)
	}
	if len(f.gpus) != 1 || f.gpus[0].Name != "Test GPU" {
		t.Errorf("registered gpus %+v", f.gpus)
	}
}

func TestAgentLostLeaseKillsHandlerSilently(t *testing.T) {
	f := newFakeServer()
	a, done := startAgent(t, f, handlerScript)
	blocked := task("echo", `{"block":true}`)
	f.claims <- blocked
	// Wait until the lease shows in a heartbeat, then report it lost.
	deadline := time.Now().Add(20 * time.Second)
	for a.Running() == 0 || !f.sawLease(blocked.Lease()) {
		if time.Now().After(deadline) {
			t.Fatal("lease never heartbeated")
		}
		<-f.beat
	}
	f.setReply(wire.HeartbeatResponse{LostLeases: []wire.Lease{blocked.Lease()}})
	for a.Running() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("handler not killed")
		}
		<-f.beat
	}
	// The next task runs normally: the slot was freed.
	next := task("echo", `{"n":2}`)
	f.claims <- next
	waitReported(t, f, next.ID)
	a.Drain()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.completed[blocked.ID]; ok {
		t.Error("lost task was completed")
	}
	if _, ok := f.failed[blocked.ID]; ok {
		t.Error("lost task was failed")
	}
}

func (f *fakeServer) sawLease(l wire.Lease) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.beats {
		for _, x := range b.Leases {
			if x == l {
				return true
			}
		}
	}
	return false
}

func TestAgentReportRetriesAndLeaseLost(t *testing.T) {
	f := newFakeServer()
	f.completeEr = []error{
		&client.Error{Status: 503, Code: wire.CodeUnavailable, Op: "complete task"},
		&client.Error{Status: 503, Code: wire.CodeUnavailable, Op: "complete task"},
		nil,
		&client.Error{Status: 409, Code: wire.CodeConflict, Op: "complete task"},
	}
	a, done := startAgent(t, f, handlerScript)
	first := task("echo", `{"n":1}`)
	f.claims <- first
	waitReported(t, f, first.ID) // after two 503s
	stale := task("echo", `{"n":2}`)
	f.claims <- stale
	waitReported(t, f, stale.ID) // 409: dropped, not retried
	a.Drain()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.completed[first.ID]; !ok {
		t.Error("first task not completed after retries")
	}
	if _, ok := f.completed[stale.ID]; ok {
		t.Error("stale task recorded")
	}
	if len(f.completeEr) != 0 {
		t.Errorf("unused scripted answers: %v", f.completeEr)
	}
}

func TestAgentDrainFinishesRunningTask(t *testing.T) {
	f := newFakeServer()
	dir := t.TempDir()
	gate := dir + "/gate"
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	// The handler waits on the fifo, so the drain arrives mid-task.
	a, done := startAgent(t, f, `read x < `+gate+`; echo '{"done":true}'`)
	tk := task("echo", `{}`)
	f.claims <- tk
	for a.Running() == 0 {
		<-f.beat
	}
	f.setReply(wire.HeartbeatResponse{Drain: true})
	for !a.isDraining() {
		<-f.beat
	}
	if err := os.WriteFile(gate, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if string(f.completed[tk.ID]) != `{"done":true}` {
		t.Fatalf("drained task result = %s", f.completed[tk.ID])
	}
}

func TestAgentStopKillsHandlers(t *testing.T) {
	f := newFakeServer()
	a, done := startAgent(t, f, handlerScript)
	tk := task("echo", `{"block":true}`)
	f.claims <- tk
	for a.Running() == 0 {
		<-f.beat
	}
	f.setReply(wire.HeartbeatResponse{Stop: true})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.completed)+len(f.failed) != 0 {
		t.Fatal("killed handler was reported")
	}
}
