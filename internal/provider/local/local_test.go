package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/provider"
	"github.com/google/uuid"
)

// TestMain lets the test binary play the agent: re-executed with
// LOCAL_TEST_AGENT set, it writes its environment to a file and waits for
// SIGTERM (or ignores it when LOCAL_TEST_AGENT=stubborn).
func TestMain(m *testing.M) {
	if mode := os.Getenv("LOCAL_TEST_AGENT"); mode != "" {
		fakeAgent(mode)
		return
	}
	os.Exit(m.Run())
}

func fakeAgent(mode string) {
	// As the real agent does: wait until the provider has recorded us.
	if err := AwaitGate(); err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	sigs := make(chan os.Signal, 1)
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	// LOCAL_TEST_OUT is a fifo the test reads: opening it blocks until the
	// test listens, so the test needs no polling.
	if err := os.WriteFile(os.Getenv("LOCAL_TEST_OUT"), []byte(strings.Join(os.Environ(), "\n")), 0o600); err != nil {
		os.Exit(2)
	}
	fmt.Println("fake agent up")
	<-sigs
	fmt.Println("fake agent got SIGTERM")
	os.Exit(0)
}

type fixture struct {
	p   *Provider
	dir string
	out string
}

func newFixture(t *testing.T, mode string, gpus []int) *fixture {
	t.Helper()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir}
	p, err := New(Options{
		Dir:        dir,
		Executable: exe,
		Args: func(req *provider.CreateRequest, exec string) []string {
			return []string{"-test.run=^$", "--", "agent", "--worker-id", req.WorkerID, "--exec", exec}
		},
		Pools:     map[string]Pool{"default": {Exec: "handler.sh", Env: map[string]string{"LOCAL_TEST_AGENT": mode, "POOL_VAR": "x"}}},
		GPUs:      gpus,
		KillGrace: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return f
}

// create starts a fake agent and returns it with its environment.
func (f *fixture) create(t *testing.T, out string) (*provider.Instance, string) {
	t.Helper()
	if err := syscall.Mkfifo(out, 0o600); err != nil {
		t.Fatal(err)
	}
	wid := uuid.NewString()
	in, err := f.p.Create(context.Background(), &provider.CreateRequest{
		WorkerID: wid, Pool: "default",
		Env: map[string]string{
			"DROVER_SERVER": "http://127.0.0.1:1", "DROVER_WORKER_ID": wid,
			"DROVER_TOKEN": "tok-secret-123", "LOCAL_TEST_OUT": out,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return in, string(b)
}

// waitGone waits for the agent process to end, then checks that Delete
// reports it gone.
func waitGone(t *testing.T, p *Provider, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, id); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("delete of exited agent: %v", err)
	}
}

func TestCreateListDelete(t *testing.T) {
	f := newFixture(t, "normal", nil)
	ctx := context.Background()
	out := filepath.Join(f.dir, "env1")
	in, env := f.create(t, out)
	if in.State != provider.InstanceRunning || in.Pool != "default" || !strings.HasPrefix(in.ID, "local-") {
		t.Fatalf("instance %+v", in)
	}
	tmp := f.p.TempPath(in.ID)
	for _, want := range []string{"DROVER_TOKEN=tok-secret-123", "DROVER_SERVER=http://127.0.0.1:1", "POOL_VAR=x", "DROVER_INSTANCE_ID=" + in.ID, "\nTMPDIR=" + tmp + "\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("agent env lacks %s", want)
		}
	}
	pid, err := f.p.PID(in.ID)
	if err != nil {
		t.Fatal(err)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if strings.Contains(string(cmdline), "tok-secret-123") {
		t.Fatal("token on the command line")
	}
	if !strings.Contains(string(cmdline), in.WorkerID) {
		t.Fatal("worker id not on the command line")
	}
	// Own process group.
	if pgid, _ := syscall.Getpgid(pid); pgid != pid {
		t.Errorf("pgid = %d, want %d", pgid, pid)
	}
	list, err := f.p.List(ctx)
	if err != nil || len(list) != 1 || list[0].WorkerID != in.WorkerID {
		t.Fatalf("list = %v, %v", list, err)
	}
	// What a killed agent left in its TMPDIR goes with it.
	left := filepath.Join(tmp, "drover-outputs-1", "tile.png")
	if err := os.MkdirAll(filepath.Dir(left), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(left, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Delete(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	waitGone(t, f.p, in.ID)
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("agent's TMPDIR after delete: %v", err)
	}
	if list, _ := f.p.List(ctx); len(list) != 0 {
		t.Fatalf("list after delete = %v", list)
	}
	if _, err := f.p.Get(ctx, in.ID); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	log, _ := os.ReadFile(f.p.LogPath(in.ID))
	if !strings.Contains(string(log), "fake agent got SIGTERM") {
		t.Fatalf("agent log: %q", log)
	}
}

func TestDeleteEscalatesToSIGKILL(t *testing.T) {
	f := newFixture(t, "stubborn", nil)
	in, _ := f.create(t, filepath.Join(f.dir, "env"))
	if err := f.p.Delete(context.Background(), in.ID); err != nil {
		t.Fatal(err)
	}
	got, err := f.p.Get(context.Background(), in.ID)
	if err != nil || got.State != provider.InstanceStopping {
		t.Fatalf("after SIGTERM: %+v %v", got, err)
	}
	waitGone(t, f.p, in.ID) // ignored SIGTERM: gone only through SIGKILL
}

func TestAdoptAfterRestart(t *testing.T) {
	f := newFixture(t, "normal", nil)
	ctx := context.Background()
	in, _ := f.create(t, filepath.Join(f.dir, "env"))
	// A new provider on the same dir (a restarted server) sees the agent.
	p2, err := New(Options{Dir: f.dir, Executable: "/nonexistent", KillGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	list, err := p2.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != in.ID || list[0].State != provider.InstanceRunning {
		t.Fatalf("adopted list = %+v, %v", list, err)
	}
	// A record whose pid belongs to another program is not ours.
	bogus := &record{ID: "local-bogus", PID: os.Getpid(), WorkerID: uuid.NewString(), Pool: "default"}
	if err := p2.write(bogus); err != nil {
		t.Fatal(err)
	}
	if got, err := p2.Get(ctx, "local-bogus"); err != nil || got.State != provider.InstanceGone {
		t.Fatalf("reused pid: %+v %v", got, err)
	}
	// It is listed as gone and exited (so its worker fails as agent-exit)
	// until deleted; only the adopted agent runs.
	running := 0
	list, _ = p2.List(ctx)
	for _, in := range list {
		switch {
		case in.State == provider.InstanceRunning:
			running++
		case in.ID != "local-bogus" || !in.Exited || in.ExitDetail == "":
			t.Fatalf("listed %+v", in)
		}
	}
	if running != 1 {
		t.Fatalf("list with reused pid = %+v", list)
	}
	if err := p2.Delete(ctx, "local-bogus"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("delete of dead record: %v", err)
	}
	// The adopted agent is stopped by the new provider.
	if err := p2.Delete(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	waitGone(t, p2, in.ID)
}

func TestGPUAssignmentAndCapacity(t *testing.T) {
	f := newFixture(t, "normal", []int{0, 1})
	a, envA := f.create(t, filepath.Join(f.dir, "a"))
	_, envB := f.create(t, filepath.Join(f.dir, "b"))
	if !strings.Contains(envA, "CUDA_VISIBLE_DEVICES=0") || !strings.Contains(envB, "CUDA_VISIBLE_DEVICES=1") {
		t.Fatalf("gpu assignment: a has 0? %v, b has 1? %v", strings.Contains(envA, "CUDA_VISIBLE_DEVICES=0"), strings.Contains(envB, "CUDA_VISIBLE_DEVICES=1"))
	}
	_, err := f.p.Create(context.Background(), &provider.CreateRequest{WorkerID: uuid.NewString(), Pool: "default"})
	if provider.KindOf(err) != provider.KindCapacity {
		t.Fatalf("third agent on two gpus: %v", err)
	}
	_ = f.p.Delete(context.Background(), a.ID)
	waitGone(t, f.p, a.ID)
	if _, env := f.create(t, filepath.Join(f.dir, "c")); !strings.Contains(env, "CUDA_VISIBLE_DEVICES=0") {
		t.Fatal("freed gpu 0 not reused")
	}
}

func TestCreateValidation(t *testing.T) {
	f := newFixture(t, "normal", nil)
	_, err := f.p.Create(context.Background(), &provider.CreateRequest{WorkerID: uuid.NewString(), Pool: "nope"})
	if provider.KindOf(err) != provider.KindInvalid || !strings.Contains(err.Error(), `pool "nope"`) {
		t.Fatalf("unknown pool: %v", err)
	}
	_, err = f.p.Create(context.Background(), &provider.CreateRequest{WorkerID: "../x", Pool: "default"})
	if provider.KindOf(err) != provider.KindInvalid {
		t.Fatalf("bad worker id: %v", err)
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("no dir accepted")
	}
}

// Two deployments sharing one state directory see only their own agents:
// the agent carries its cluster in its id, environment and state file.
func TestClusterSeparatesDeployments(t *testing.T) {
	f := newFixture(t, "normal", nil)
	ctx := context.Background()
	views := map[string]*Provider{}
	for _, c := range []string{"blue", "green"} {
		opt := f.p.opt
		opt.Cluster = c
		p, err := New(opt)
		if err != nil {
			t.Fatal(err)
		}
		views[c] = p
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = p.Shutdown(ctx)
		})
	}
	blue, green := views["blue"], views["green"]
	f.p = blue
	in, env := f.create(t, filepath.Join(f.dir, "env-blue"))
	if !strings.HasPrefix(in.ID, "local-blue-") {
		t.Fatalf("instance id %q does not name the cluster", in.ID)
	}
	if !strings.Contains(env, "\nDROVER_CLUSTER=blue") {
		t.Fatalf("agent environment lacks DROVER_CLUSTER=blue:\n%s", env)
	}
	if got, err := blue.List(ctx); err != nil || len(got) != 1 || got[0].ID != in.ID {
		t.Fatalf("blue List = %v, %v; want its one agent", got, err)
	}
	for name, p := range map[string]*Provider{"green": green, "default": newFixtureProvider(t, f.dir)} {
		if got, err := p.List(ctx); err != nil || len(got) != 0 {
			t.Fatalf("%s List = %v, %v; want nothing", name, got, err)
		}
		if _, err := p.Get(ctx, in.ID); !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("%s Get of blue's agent: %v, want not found", name, err)
		}
		if err := p.Delete(ctx, in.ID); !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("%s Delete of blue's agent: %v, want not found", name, err)
		}
	}
	if _, err := blue.PID(in.ID); err != nil {
		t.Fatalf("blue's agent was touched by another deployment: %v", err)
	}
	if err := blue.Delete(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	waitGone(t, blue, in.ID)
}

// newFixtureProvider is a provider without a cluster on dir.
func newFixtureProvider(t *testing.T, dir string) *Provider {
	t.Helper()
	p, err := New(Options{Dir: dir, Executable: "/bin/false", KillGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
