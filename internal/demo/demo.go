// Package demo is `drover demo`: one command, no setup. It starts a whole
// Drover server in-process (embedded SQLite in a temp dir, the API on a
// free loopback port, the control loop, one local pool of 0–4 agents),
// submits a batch of Mandelbrot tiles rendered by real handler processes
// (`drover demo-handler`), shows live progress, SIGKILLs one agent mid-run
// to show that its task is requeued and finished elsewhere, prints a
// summary and stitches the tiles into one PNG.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/server"
	"github.com/google/uuid"
)

// Options configure a demo run.
type Options struct {
	// Tasks is the number of tiles (default 24).
	Tasks int
	// Exit ends the demo when every task is done instead of serving until
	// ctx is cancelled.
	Exit bool
	// Kill SIGKILLs one agent mid-run (default true via NewOptions).
	Kill bool
	// Dir is the working directory; "" creates a temp dir.
	Dir string
	// Executable is the drover binary (default os.Executable()).
	Executable string
	// Out receives the progress lines and the summary.
	Out io.Writer
	// Logger receives the server's logs (default: discarded below warn).
	Logger *slog.Logger
	// Size, Iter and Samples shape the work per tile (256, 500, 2).
	Size, Iter, Samples int
}

// Summary is what a finished demo reports.
type Summary struct {
	Dir            string
	Succeeded      int
	Failed         int
	WorkersSpawned int
	KilledWorker   string
	KilledTask     string
	// KilledTaskAttempts is the attempt that finished the killed task.
	KilledTaskAttempts int
	KilledTaskFinisher string
	// KilledWorkerFate is how the server classified the killed worker.
	KilledWorkerFate string
	Image            string
	Elapsed          time.Duration
	// ExampleTask is a tile task whose PNG is stored as a task output.
	ExampleTask string
}

// MaxTasks bounds --tasks.
const MaxTasks = 1000

// Run runs the demo. It returns the summary once the batch is done (with
// Exit) or when ctx is cancelled.
func Run(ctx context.Context, opt Options) (*Summary, error) {
	if opt.Tasks == 0 {
		opt.Tasks = 24
	}
	if opt.Tasks < 1 || opt.Tasks > MaxTasks {
		return nil, fmt.Errorf("demo: --tasks %d: want 1..%d", opt.Tasks, MaxTasks)
	}
	if opt.Out == nil {
		opt.Out = os.Stdout
	}
	if opt.Size == 0 {
		opt.Size = 256
	}
	if opt.Iter == 0 {
		opt.Iter = 500
	}
	if opt.Samples == 0 {
		opt.Samples = 2
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("demo: find own executable: %w", err)
		}
		opt.Executable = exe
	}
	if opt.Dir == "" {
		d, err := os.MkdirTemp("", "drover-demo-")
		if err != nil {
			return nil, fmt.Errorf("demo: create temp dir: %w", err)
		}
		opt.Dir = d
	}
	tiles := filepath.Join(opt.Dir, "tiles")
	if err := os.MkdirAll(tiles, 0o755); err != nil {
		return nil, fmt.Errorf("demo: create tiles dir: %w", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: listen on loopback: %w", err)
	}
	token, err := server.RandomToken()
	if err != nil {
		ln.Close()
		return nil, err
	}
	cfg := Config(opt.Dir, ln.Addr().String(), opt.Executable)
	cfg.Auth.OperatorToken = token
	if err := cfg.Validate(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("demo: config: %w", err)
	}
	srv, err := server.New(ctx, cfg, server.Options{
		Listener: ln, LocalExecutable: opt.Executable, LocalKillGrace: 3 * time.Second, Logger: opt.Logger,
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("demo: %w", err)
	}
	runCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Run(runCtx) }()
	defer func() {
		// Stop the agents first (the demo owns them), then the server.
		shCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if srv.Local != nil {
			_ = srv.Local.Shutdown(shCtx)
		}
		stopServer()
		<-srvDone
	}()

	c, err := client.New(srv.URL(), token)
	if err != nil {
		return nil, err
	}
	// The token goes to a 0600 file so the CLI can talk to the demo server;
	// it is never printed.
	tokenFile := filepath.Join(opt.Dir, "operator.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("demo: write token file: %w", err)
	}

	out := opt.Out
	fmt.Fprintf(out, "drover demo: server on %s, data in %s\n", srv.URL(), opt.Dir)
	fmt.Fprintf(out, "pool default: local agents (min 0, max 4, concurrency 1), handler: drover demo-handler\n")

	cols := int(math.Ceil(math.Sqrt(float64(opt.Tasks) * 1.5)))
	rows := (opt.Tasks + cols - 1) / cols
	reqs := make([]wire.SubmitRequest, opt.Tasks)
	// The victim tile is claimed first (priority 1) and holds its worker
	// for a few seconds, so the SIGKILL always lands mid-task however fast
	// the machine renders.
	const victim = 0
	for i := range reqs {
		t := Tile{Index: i, Cols: cols, Rows: rows, Size: opt.Size, Iter: opt.Iter, Samples: opt.Samples, Out: tiles}
		prio := 0
		if opt.Kill && i == victim {
			t.HoldMS, prio = 3000, 1
		}
		p, _ := json.Marshal(t)
		reqs[i] = wire.SubmitRequest{Type: TaskType, Params: p, Owner: "demo", Priority: &prio, IdempotencyKey: "demo-tile-" + strconv.Itoa(i)}
	}
	start := time.Now()
	res, err := c.SubmitBatch(ctx, reqs)
	if err != nil {
		return nil, fmt.Errorf("demo: submit: %w", err)
	}
	fmt.Fprintf(out, "submitted %d tasks (%d×%d tiles of %dpx)\n", len(res), cols, rows, opt.Size)
	victimID := res[victim].Task.ID.String()

	sum := &Summary{Dir: opt.Dir, ExampleTask: res[0].Task.ID.String()}
	// Sample every 200 ms (to catch the victim while it runs), print a
	// progress line every second.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var lastLine time.Time
	for {
		snap, err := snapshot(ctx, c)
		if err != nil {
			fmt.Fprintf(out, "  (status unavailable: %v)\n", err)
		} else {
			finished := snap.done+snap.failed >= opt.Tasks
			if finished || time.Since(lastLine) >= time.Second {
				lastLine = time.Now()
				fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), snap.line())
			}
			if opt.Kill && sum.KilledWorker == "" {
				if w, tk, err := killOne(srv, snap, victimID); err == nil {
					sum.KilledWorker, sum.KilledTask = w, tk
					fmt.Fprintf(out, "  ✗ SIGKILL agent of worker %s while it runs task %s: the task must be requeued and finished elsewhere\n", short(w), short(tk))
				}
			}
			if finished {
				break
			}
		}
		select {
		case <-ctx.Done():
			return sum, nil
		case <-tick.C:
		}
	}
	sum.Elapsed = time.Since(start)

	final, err := c.Tasks(ctx, wire.TaskFilter{Owner: "demo", Limit: 1000})
	if err != nil {
		return nil, fmt.Errorf("demo: list tasks: %w", err)
	}
	for _, t := range final {
		switch t.State {
		case core.TaskSucceeded:
			sum.Succeeded++
		case core.TaskFailed:
			sum.Failed++
		}
		if t.ID.String() == sum.KilledTask {
			sum.KilledTaskAttempts = t.Attempt
			if t.WorkerID != nil {
				sum.KilledTaskFinisher = t.WorkerID.String()
			}
		}
	}
	workers, err := c.Workers(ctx, wire.WorkerFilter{Limit: 1000})
	if err == nil {
		sum.WorkersSpawned = len(workers)
		for _, w := range workers {
			if w.ID.String() == sum.KilledWorker {
				sum.KilledWorkerFate = string(w.State)
				if w.Failure != "" {
					sum.KilledWorkerFate += ", failure class " + string(w.Failure)
				}
			}
		}
	}
	if sum.Failed == 0 {
		img := filepath.Join(opt.Dir, "mandelbrot.png")
		if err := Assemble(tiles, cols, rows, opt.Tasks, img); err == nil {
			sum.Image = img
		} else {
			fmt.Fprintf(out, "  could not stitch tiles: %v\n", err)
		}
	}
	sum.print(out, tiles)
	if opt.Exit {
		return sum, nil
	}
	fmt.Fprintf(out, "\nstill serving on %s (API, /metrics); operator token in %s\n", srv.URL(), tokenFile)
	fmt.Fprintf(out, "try: DROVER_SERVER=%s DROVER_TOKEN=$(cat %s) drover status\n", srv.URL(), tokenFile)
	fmt.Fprintf(out, "press Ctrl-C to stop\n")
	select {
	case <-ctx.Done():
	case err := <-srvDone:
		srvDone <- err
		if err != nil {
			return sum, err
		}
	}
	return sum, nil
}

// Config returns the demo's configuration: SQLite in dir, the API on addr,
// short intervals so that recovery is visible within seconds, and one local
// pool whose agents run `<exe> demo-handler`.
func Config(dir, addr, exe string) *config.Config {
	cfg := config.Default()
	cfg.Listen = addr
	cfg.PublicURL = "http://" + addr
	cfg.Database = "sqlite://" + filepath.Join(dir, "drover.db")
	cfg.Tick = config.Duration(500 * time.Millisecond)
	cfg.HeartbeatInterval = config.Duration(500 * time.Millisecond)
	cfg.HeartbeatTimeout = config.Duration(3 * time.Second)
	cfg.LogLevel = "warn"
	cfg.Tasks.OwnerLimit = 0
	cfg.Tasks.BackoffBase = config.Duration(500 * time.Millisecond)
	cfg.Tasks.BackoffMax = config.Duration(5 * time.Second)
	cfg.Providers.Local.Dir = filepath.Join(dir, "agents")
	pool := config.DevPool()
	pool.Min, pool.Max, pool.Concurrency = 0, 4, 1
	pool.IdleTimeout = config.Duration(10 * time.Second)
	pool.BootTimeout = config.Duration(60 * time.Second)
	pool.ProvisionTimeout = config.Duration(30 * time.Second)
	pool.DrainTimeout = config.Duration(30 * time.Second)
	pool.OrphanGrace = config.Duration(30 * time.Second)
	pool.Exec = shellQuote(exe) + " demo-handler"
	cfg.Pools = map[string]*config.PoolConfig{core.DefaultPool: pool}
	return cfg
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// snap is one progress sample.
type snap struct {
	queued, running, done, failed int
	workers                       map[core.WorkerState]int
	runningTasks                  []*wire.Task
	live                          []*wire.Worker
}

func snapshot(ctx context.Context, c *client.Client) (*snap, error) {
	tasks, err := c.Tasks(ctx, wire.TaskFilter{Owner: "demo", Limit: 1000})
	if err != nil {
		return nil, err
	}
	s := &snap{workers: map[core.WorkerState]int{}}
	for _, t := range tasks {
		switch t.State {
		case core.TaskQueued:
			s.queued++
		case core.TaskRunning:
			s.running++
			s.runningTasks = append(s.runningTasks, t)
		case core.TaskSucceeded:
			s.done++
		case core.TaskFailed, core.TaskCancelled:
			s.failed++
		}
	}
	ws, err := c.Workers(ctx, wire.WorkerFilter{Limit: 1000})
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		s.workers[w.State]++
		if w.State.Live() {
			s.live = append(s.live, w)
		}
	}
	return s, nil
}

func (s *snap) line() string {
	order := []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting, core.WorkerReady,
		core.WorkerDraining, core.WorkerTerminating, core.WorkerFailed, core.WorkerTerminated}
	var ws []string
	for _, st := range order {
		if n := s.workers[st]; n > 0 {
			ws = append(ws, fmt.Sprintf("%s %d", st, n))
		}
	}
	if len(ws) == 0 {
		ws = []string{"none"}
	}
	return fmt.Sprintf("queue %d · running %d · done %d · failed %d │ workers: %s",
		s.queued, s.running, s.done, s.failed, strings.Join(ws, ", "))
}

// killOne SIGKILLs the agent of the ready worker that is running task
// taskID, if it is running now.
func killOne(srv *server.Server, s *snap, taskID string) (string, string, error) {
	if srv.Local == nil {
		return "", "", errors.New("no local provider")
	}
	byID := map[uuid.UUID]*wire.Worker{}
	for _, w := range s.live {
		byID[w.ID] = w
	}
	for _, t := range s.runningTasks {
		if t.ID.String() != taskID || t.WorkerID == nil {
			continue
		}
		w := byID[*t.WorkerID]
		if w == nil || w.InstanceID == "" || w.State != core.WorkerReady {
			continue
		}
		pid, err := srv.Local.PID(w.InstanceID)
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			continue
		}
		return w.ID.String(), t.ID.String(), nil
	}
	return "", "", errors.New("no running task on a ready worker")
}

func (s *Summary) print(out io.Writer, tiles string) {
	fmt.Fprintf(out, "\nsummary (%.1fs):\n", s.Elapsed.Seconds())
	fmt.Fprintf(out, "  tasks succeeded: %d, failed: %d\n", s.Succeeded, s.Failed)
	fmt.Fprintf(out, "  workers spawned: %d\n", s.WorkersSpawned)
	if s.KilledWorker != "" {
		verdict := "requeued and finished"
		if s.KilledTaskFinisher == s.KilledWorker || s.KilledTaskFinisher == "" {
			verdict = "NOT finished elsewhere"
		}
		fmt.Fprintf(out, "  killed worker %s (now %s): its task %s was %s by worker %s (attempt %d)\n",
			short(s.KilledWorker), s.KilledWorkerFate, short(s.KilledTask), verdict, short(s.KilledTaskFinisher), s.KilledTaskAttempts)
	}
	fmt.Fprintf(out, "  tiles: %s\n", tiles)
	if s.ExampleTask != "" {
		fmt.Fprintf(out, "  outputs: every tile is stored as its task's output; fetch one with\n")
		fmt.Fprintf(out, "    drover tasks outputs %s --download DIR   (or GET /v1/tasks/%s/outputs)\n", s.ExampleTask, s.ExampleTask)
	}
	if s.Image != "" {
		fmt.Fprintf(out, "  image: %s\n", s.Image)
	}
}

func short(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}
