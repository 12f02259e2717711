package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// killAfter is a listener whose connections count the bytes the server
// reads; once armed, the first read that takes the count past the
// threshold SIGKILLs a process before it returns — while the server is
// still inside the upload, so the upload can never finish.
type killAfter struct {
	net.Listener
	mu        sync.Mutex
	pid       int
	threshold int64
	read      atomic.Int64
	killedAt  atomic.Int64 // bytes read when the kill was sent; 0 before
	killed    chan struct{}
}

func (k *killAfter) arm(pid int, threshold int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pid, k.threshold = pid, threshold
	k.read.Store(0)
}

func (k *killAfter) Accept() (net.Conn, error) {
	c, err := k.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, k: k}, nil
}

type countingConn struct {
	net.Conn
	k *killAfter
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	k := c.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pid == 0 || k.killedAt.Load() != 0 {
		return n, err
	}
	if got := k.read.Add(int64(n)); got >= k.threshold {
		if kerr := syscall.Kill(k.pid, syscall.SIGKILL); kerr == nil {
			k.killedAt.Store(got)
			close(k.killed)
		}
	}
	return n, err
}

// TestAgentKilledMidUploadRecordsOneSet: a real `drover agent` process is
// SIGKILLed while it uploads a 64 MiB output (when the server has read 8
// MiB of it); the task reruns on the other agent and exactly one set of
// outputs is recorded: the manifest matches the downloaded bytes, the
// dead attempt's half-upload never became an object, and nothing of it is
// left in the store.
func TestAgentKilledMidUploadRecordsOneSet(t *testing.T) {
	const sizeMiB, killAtMiB = 64, 8
	ka := &killAfter{killed: make(chan struct{})}
	hbTimeout := time.Second
	e := newEnv(t, envOpts{agents: 2, heartbeat: 200 * time.Millisecond, heartbeatTimeout: hbTimeout, killGrace: 5 * time.Second,
		listener: func(ln net.Listener) net.Listener { ka.Listener = ln; return ka }})
	gate := filepath.Join(e.dir, "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseGate(gate) })
	id := e.submit(map[string]any{"i": 7, "big_mib": sizeMiB, "gate": gate})[0]
	victim := e.waitRunning(id)
	e.waitAtGate(id) // big.bin is written; the upload starts when the handler exits
	ka.arm(e.agentPID(victim), killAtMiB<<20)
	openGate(t, gate)
	select {
	case <-ka.killed:
	case <-time.After(120 * time.Second):
		t.Fatalf("the agent was not killed: the server read %d bytes after the gate opened", ka.read.Load())
	}
	if at := ka.killedAt.Load(); at >= sizeMiB<<20 {
		t.Fatalf("killed after %d bytes: not mid-upload", at)
	}
	eventually(t, 120*time.Second, "task finished elsewhere", func() (bool, string) {
		tk := e.task(id)
		return tk.State.Terminal(), fmt.Sprintf("%s attempt %d", tk.State, tk.Attempt)
	})
	tk := e.task(id)
	var r result
	_ = json.Unmarshal(tk.Result, &r)
	if tk.State != core.TaskSucceeded || r.Worker == victim.String() || r.Attempt != 2 || tk.Lost != 1 {
		t.Fatalf("task %s (%s) lost=%d result %s (victim %s)", tk.State, tk.Error, tk.Lost, tk.Result, victim)
	}

	// One set: attempt 2's big.bin, whose bytes match the manifest.
	res, err := e.c.Outputs(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Name != "big.bin" || res.Outputs[0].Attempt != 2 || res.Outputs[0].Size != sizeMiB<<20 {
		t.Fatalf("recorded outputs %+v, want attempt 2's big.bin of %d MiB", res.Outputs, sizeMiB)
	}
	path, err := e.c.DownloadOutput(context.Background(), id, "big.bin", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	f.Close()
	if err != nil || n != sizeMiB<<20 || hex.EncodeToString(h.Sum(nil)) != res.Outputs[0].SHA256 {
		t.Fatalf("downloaded %d bytes (%v) hashing to %x; the manifest says %s", n, err, h.Sum(nil), res.Outputs[0].SHA256)
	}

	// The store holds only the winning attempt's object: the dead
	// attempt's partial upload was never renamed into place, and no
	// temporary file of it is left.
	root := filepath.Join(e.dir, "drover.db.outputs", "tasks", id.String())
	var files []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || !strings.HasSuffix(files[0], string(filepath.Separator)+"big.bin") {
		t.Fatalf("objects of task %s in the store: %v, want one lease's big.bin", id, files)
	}
}
