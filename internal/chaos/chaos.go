// Package chaos is `drover bench chaos`: several `drover serve` replicas
// (real processes of the drover binary) on one PostgreSQL behind a loopback
// load balancer, a local pool of agents, thousands of tasks with
// dependencies, idempotency keys and injected handler failures, and faults
// while they run: agents SIGKILLed every few seconds, the leader replica
// SIGKILLed (and restarted), a replica paused past its lease, PostgreSQL
// restarted. At the end it checks that nothing was lost, completed twice
// or spawned twice, that no agent process outlives the shutdown, and it
// measures failover times, requeue delays and throughput against a calm
// phase of the same run.
//
// cmd/drover wires it; the short form runs in CI as
// `go test -tags chaos -run TestChaosShort ./internal/chaos/`.
package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider/local"
	"github.com/droverhq/drover/internal/store/postgres"
)

// run is one chaos run in progress.
type run struct {
	cfg     *Config
	start   time.Time
	dir     string
	markers string
	agents  string
	cluster string
	dbURL   string
	restart string
	fleet   *fleet
	proxy   *Proxy
	c       *client.Client
	st      *postgres.Store

	// Filled while running (mu).
	mu        sync.Mutex
	kills     []agentKill
	failovers []time.Duration
	pauses    []pauseRecord
	pgDowns   []time.Duration
	notes     []string
	samples   sampleStats
	calmStart atomic.Int64 // unix ns: the pool first reached its size
	shutDown  bool
}

type agentKill struct {
	At     time.Time
	Worker string
	PID    int
}

type pauseRecord struct {
	Takeover time.Duration
	// NoTakeover: no other replica led while it was paused (Takeover is
	// then the time waited).
	NoTakeover bool
	Paused     time.Duration
	// Fenced is drover_leader_fenced_writes_total on the paused replica
	// after it resumed (-1: not read).
	Fenced float64
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "chaos %6.1fs  %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

func (r *run) note(format string, args ...any) {
	r.mu.Lock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	r.logf(format, args...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Run runs the harness and returns its result. An error means the run
// could not be carried out; broken invariants are in the result (OK).
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: &cfg, start: time.Now(), cluster: "chaos-" + randomHex(4)}
	var cleanup []func()
	defer func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}()

	// The database: the one given, or a private cluster.
	dbDesc := "given by --db"
	if cfg.DB != "" {
		r.dbURL, r.restart = cfg.DB, cfg.PGRestart
		if r.restart == "" && cfg.PGRestarts > 0 {
			r.note("PostgreSQL restart skipped: no restart command given with the database")
		}
	} else {
		pg, err := StartPrivatePG(ctx)
		if err != nil {
			return nil, fmt.Errorf("no database for the chaos run: %w; give a PostgreSQL URL and a command that restarts that server (--db, --pg-restart)", err)
		}
		cleanup = append(cleanup, func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := pg.Stop(sctx); err != nil {
				r.logf("%v", err)
			}
		})
		r.dbURL, r.restart = pg.URL(), pg.RestartCommand()
		dbDesc = "private PostgreSQL cluster " + pg.URL()
	}
	r.logf("database: %s", dbDesc)

	if r.dir = cfg.Dir; r.dir == "" {
		if r.dir, err = os.MkdirTemp("", "drover-chaos-"); err != nil {
			return nil, fmt.Errorf("chaos: temp dir: %w", err)
		}
		defer func() {
			if res != nil && res.OK() {
				_ = os.RemoveAll(r.dir)
			}
		}()
	}
	r.markers, r.agents = filepath.Join(r.dir, "markers"), filepath.Join(r.dir, "agents")
	if err := os.MkdirAll(r.markers, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: markers dir: %w", err)
	}
	script, err := writeHandler(r.dir, r.markers)
	if err != nil {
		return nil, err
	}
	r.logf("run directory: %s (configs, serve logs, agent logs, markers)", r.dir)

	// The replicas behind the proxy.
	var addrs []string
	for range cfg.Replicas {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("chaos: proxy listen: %w", err)
	}
	r.proxy = NewProxy(addrs)
	psrv := &http.Server{Handler: r.proxy, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = psrv.Serve(ln) }()
	hctx, hcancel := context.WithCancel(ctx)
	go r.proxy.Health(hctx, 500*time.Millisecond)
	cleanup = append(cleanup, func() { hcancel(); _ = psrv.Close() })
	public := "http://" + ln.Addr().String()

	r.fleet = &fleet{bin: cfg.Binary, token: randomHex(24), hc: &http.Client{Timeout: 5 * time.Second}}
	for i, a := range addrs {
		conf, logs := replicaPaths(r.dir, i)
		y := replicaConfig(a, public, r.cluster, r.dbURL, script, r.agents, &cfg)
		if err := os.WriteFile(conf, []byte(y), 0o600); err != nil {
			return nil, fmt.Errorf("chaos: write config: %w", err)
		}
		r.fleet.replicas = append(r.fleet.replicas, &replica{idx: i, addr: a, conf: conf, logs: logs})
	}
	// The replicas and agents stop before the database does (cleanup runs
	// backwards); shutdown below normally did it already.
	cleanup = append(cleanup, func() {
		if !r.shutDown {
			r.shutdown(context.Background())
		}
	})
	// The first replica migrates the database; the others start after it.
	for i, rep := range r.fleet.replicas {
		if err := r.fleet.start(rep); err != nil {
			return nil, err
		}
		if i == 0 {
			if err := r.fleet.waitReady(ctx, rep, 2*time.Minute); err != nil {
				return nil, err
			}
		}
	}
	for _, rep := range r.fleet.replicas {
		if err := r.fleet.waitReady(ctx, rep, 2*time.Minute); err != nil {
			return nil, err
		}
	}
	r.logf("%d replicas ready behind %s (cluster %s)", cfg.Replicas, public, r.cluster)
	if r.st, err = postgres.Open(ctx, r.dbURL); err != nil {
		return nil, fmt.Errorf("chaos: open the database: %w", err)
	}
	cleanup = append(cleanup, func() { _ = r.st.Close() })
	if r.c, err = client.New(public, r.fleet.token); err != nil {
		return nil, fmt.Errorf("chaos: client: %w", err)
	}
	return r.execute(ctx)
}

// execute submits the work, runs the calm and the chaos phases, collects
// the evidence, shuts everything down and checks the invariants.
func (r *run) execute(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	rng := mrand.New(mrand.NewPCG(uint64(cfg.Seed), 1))
	wl := newWorkload(cfg, rng)
	sub := &submitted{ids: map[string]string{}}
	for b := range wl.batches {
		if err := wl.submit(ctx, r.c, b, sub, 5*time.Minute); err != nil {
			return nil, err
		}
	}
	// Idempotency: the first batch again returns the same tasks.
	if err := wl.submit(ctx, r.c, 0, sub, 5*time.Minute); err != nil {
		return nil, err
	}
	r.logf("submitted %d tasks (%d fail their first attempt, %d dependencies), re-submitted %d keys", cfg.Tasks, wl.failing, wl.chained, sub.resubmitted)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var bg sync.WaitGroup
	bg.Go(func() { r.sample(runCtx) })

	deadline := r.start.Add(cfg.Duration)
	calmN := max(1, int(float64(cfg.Tasks)*cfg.CalmFraction))
	_ = pollUntil(ctx, deadline, time.Second, func() bool { return countDone(r.markers) >= calmN })
	if ctx.Err() != nil {
		return nil, fmt.Errorf("chaos: interrupted: %w", ctx.Err())
	}
	calmEnd := time.Now()
	cs := r.calmStart.Load()
	if cs == 0 {
		cs = r.start.UnixNano()
	}
	calmRate := float64(calmN) / max(calmEnd.Sub(time.Unix(0, cs)).Seconds(), 0.001)
	est := time.Duration(float64(cfg.Tasks-calmN) / max(calmRate, 0.01) * float64(time.Second))
	r.logf("calm phase: %d tasks at %.1f tasks/s; chaos for about %s", calmN, calmRate, est.Round(time.Second))

	chaosCtx, stopChaos := context.WithCancel(runCtx)
	defer stopChaos()
	var faults sync.WaitGroup
	faults.Go(func() { r.killAgents(chaosCtx, mrand.New(mrand.NewPCG(uint64(cfg.Seed), 2))) })
	faultsDone := make(chan struct{})
	go func() { r.majorFaults(chaosCtx, est, wl, sub); close(faultsDone) }()

	finished := func() bool {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		ts, err := r.c.Tasks(cctx, wire.TaskFilter{Type: TaskType, States: []wire.TaskState{core.TaskQueued, core.TaskRunning}, Limit: 1})
		return err == nil && len(ts) == 0
	}
	allDone := pollUntil(ctx, deadline, 2*time.Second, finished) == nil
	if !allDone {
		r.note("the run reached its --duration cap (%s) with tasks left", cfg.Duration)
	}
	// The faults still due are skipped once the work is done; one in
	// progress completes (a restarted replica must come back).
	stopChaos()
	faults.Wait()
	<-faultsDone
	chaosEnd := time.Now()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("chaos: interrupted: %w", ctx.Err())
	}
	r.logf("chaos phase over: all tasks final=%v", allDone)

	ev, err := r.collect(ctx)
	if err != nil {
		return nil, err
	}
	stopRun()
	bg.Wait()
	ev.leaked = r.shutdown(ctx)

	r.fill(ev, calmEnd, chaosEnd)
	res := analyze(cfg, sub, ev)
	res.Database = "private cluster"
	if cfg.DB != "" {
		res.Database = "given"
	}
	res.TotalS = time.Since(r.start).Seconds()
	return res, nil
}

// pollUntil calls cond every interval until it holds, ctx ends or the
// deadline passes (errTimeout).
func pollUntil(ctx context.Context, deadline time.Time, interval time.Duration, cond func() bool) error {
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return errTimeout
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// stopReplicas stops every replica (SIGCONT, SIGTERM, SIGKILL after 20 s).
func (r *run) stopReplicas() {
	var wg sync.WaitGroup
	for _, rep := range r.fleet.replicas {
		wg.Go(func() { rep.stop(20 * time.Second) })
	}
	wg.Wait()
}

// shutdown stops the replicas, then the agents as an operator would (the
// local provider's shutdown: SIGTERM every recorded agent, SIGKILL after a
// grace), and returns the processes of the deployment still alive
// afterwards (they are killed).
func (r *run) shutdown(ctx context.Context) []proc {
	r.shutDown = true
	r.stopReplicas()
	sctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	lp, err := local.New(local.Options{Dir: r.agents, Cluster: r.cluster, Executable: r.cfg.Binary, KillGrace: 10 * time.Second})
	if err == nil {
		err = lp.Shutdown(sctx)
	}
	if err != nil {
		r.note("stopping the agents: %v", err)
	}
	var left []proc
	_ = poll(ctx, 20*time.Second, func() bool {
		left = clusterProcs(r.cluster)
		return len(left) == 0
	})
	for _, p := range left {
		_ = killPID(p.PID)
	}
	r.logf("shutdown: %d processes of the deployment left", len(left))
	return left
}

var errNoLeader = errors.New("no live replica leads")
