package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/provider/runpod/fakerunpod"
	"github.com/droverhq/drover/internal/server"
)

// RunPodConfig is the workload of the RunPod benchmark.
type RunPodConfig struct {
	// Workers is how many workers are spawned and terminated (200).
	Workers int
	// Rate5xx and Rate429 are the fake's random error rates (0.05 each).
	Rate5xx, Rate429 float64
	// Quota requests per Window is the advertised budget (300 per 10 s).
	Quota  int
	Window time.Duration
	// CapacityErrors is how many creates the first candidate refuses for
	// capacity (40), so that fallbacks are measured.
	CapacityErrors int
	// Tick is the control-loop period (500 ms); MaxSpawnPerTick bounds
	// spawns per tick (50).
	Tick            time.Duration
	MaxSpawnPerTick int
	// Timeout bounds each phase (5 min).
	Timeout time.Duration
	// Now measures durations (default time.Now).
	Now func() time.Time
}

// RunPodResult is what the RunPod benchmark measured.
type RunPodResult struct {
	Cfg                   RunPodConfig
	Spawn, Terminate      time.Duration
	SpawnsPerSec, EndsPer float64
	Calls                 map[string]int
	Created, Attempts     int
	// CreateGetPerWorker is (create + get calls) / workers.
	CreateGetPerWorker float64
	// Lists is the number of list calls, Ticks the ticks they span.
	Lists, Ticks int
	// CapacityDelays are capacity-400 → next create delays.
	CapacityDelays         []time.Duration
	CapP50, CapP99, CapMax time.Duration
	MaxInWindow            int
	OverBudget, Injected   int
	LimiterBudgetExceeded  bool
}

// RunRunPod spawns cfg.Workers workers through `drover serve`'s wiring
// against a fake RunPod (no agents), then restarts the server with min 0
// and a short boot timeout so that every worker is failed and its pod
// deleted, and reports what the fake saw.
func RunRunPod(ctx context.Context, cfg RunPodConfig) (*RunPodResult, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 200
	}
	if cfg.Quota <= 0 {
		cfg.Quota = 300
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 500 * time.Millisecond
	}
	if cfg.MaxSpawnPerTick <= 0 {
		cfg.MaxSpawnPerTick = 50
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	dir, err := os.MkdirTemp("", "drover-bench-runpod-")
	if err != nil {
		return nil, fmt.Errorf("bench runpod: temp dir: %w", err)
	}
	defer os.RemoveAll(dir)

	const key = "bench-key"
	fake := fakerunpod.New(fakerunpod.Options{APIKey: key, ProvisionTime: 500 * time.Millisecond, StartTime: 500 * time.Millisecond,
		Quota: cfg.Quota, Window: cfg.Window, Seed: 1, Logger: slog.New(slog.DiscardHandler)})
	defer fake.Close()
	fake.SetErrorRates(cfg.Rate5xx, cfg.Rate429, 1)
	gpu := "NVIDIA GeForce RTX 4090"
	if cfg.CapacityErrors > 0 {
		fake.NoCapacity(gpu, "US-TX-3", cfg.CapacityErrors)
	}
	api := httptest.NewServer(fake.Handler())
	defer api.Close()

	dcfg := config.Default()
	dcfg.Database = "sqlite://" + filepath.Join(dir, "bench.db")
	dcfg.Cluster = "bench"
	dcfg.Tick = config.Duration(cfg.Tick)
	dcfg.HeartbeatInterval = config.Duration(100 * time.Millisecond)
	dcfg.HeartbeatTimeout = config.Duration(500 * time.Millisecond)
	dcfg.Auth.OperatorToken = "bench"
	dcfg.Providers.RunPod = config.RunPodConfig{BaseURL: api.URL, APIKey: key}
	pool := config.DevPool()
	pool.Provider, pool.Image, pool.Exec = "runpod", "ghcr.io/acme/worker:1", "cat"
	pool.Min, pool.Max, pool.MaxSpawnPerTick = cfg.Workers, cfg.Workers, cfg.MaxSpawnPerTick
	pool.BootTimeout = config.Duration(time.Hour)
	pool.Candidates = []config.CandidateConfig{{GPU: gpu, Regions: []string{"US-TX-3", "US-KS-2"}}}
	dcfg.Pools = map[string]*config.PoolConfig{"gpu": pool}
	dcfg.Breaker.MinSamples = 1000 // capacity refusals are the workload, not a fault
	dcfg.Breaker.MaxConsecutive = 1000

	res := &RunPodResult{Cfg: cfg}
	run := func(c *config.Config, done func() bool) (time.Duration, int, error) {
		if err := c.Validate(); err != nil {
			return 0, 0, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		c.Listen = ln.Addr().String()
		c.PublicURL = "http://" + c.Listen
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		srv, err := server.New(rctx, c, server.Options{Listener: ln, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return 0, 0, err
		}
		errc := make(chan error, 1)
		start := cfg.Now()
		go func() { errc <- srv.Run(rctx) }()
		deadline := start.Add(cfg.Timeout)
		var took time.Duration
		for !done() {
			if cfg.Now().After(deadline) {
				cancel()
				<-errc
				return 0, 0, fmt.Errorf("bench runpod: phase not done after %s", cfg.Timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
		took = cfg.Now().Sub(start)
		cancel()
		<-errc
		return took, int(took / cfg.Tick), nil
	}

	var ticks int
	res.Spawn, ticks, err = run(dcfg, func() bool { return len(fake.Live()) >= cfg.Workers })
	if err != nil {
		return nil, err
	}
	spawnCalls := fake.Stats()
	res.Ticks = ticks
	res.Lists = spawnCalls.Calls[fakerunpod.RouteList]

	end := *dcfg
	endPool := *pool
	endPool.Min = 0
	endPool.BootTimeout = config.Duration(time.Second)
	end.Pools = map[string]*config.PoolConfig{"gpu": &endPool}
	res.Terminate, _, err = run(&end, func() bool { return len(fake.Live()) == 0 })
	if err != nil {
		return nil, err
	}

	st := fake.Stats()
	res.Calls = st.Calls
	res.Created, res.Attempts = st.Created, st.CreateAttempts
	res.CreateGetPerWorker = float64(spawnCalls.Calls[fakerunpod.RouteCreate]+st.Calls[fakerunpod.RouteGet]) / float64(cfg.Workers)
	res.MaxInWindow, res.OverBudget, res.Injected = st.MaxInWindow, st.OverBudget, st.Injected
	res.LimiterBudgetExceeded = st.MaxInWindow > cfg.Quota
	res.SpawnsPerSec = float64(cfg.Workers) / res.Spawn.Seconds()
	res.EndsPer = float64(cfg.Workers) / res.Terminate.Seconds()

	creates := fake.Creates()
	for i, c := range creates {
		if c.Status != 400 {
			continue
		}
		for _, n := range creates[i+1:] {
			if n.Name != c.Name || !slices.Equal(n.DataCenters, c.DataCenters) {
				res.CapacityDelays = append(res.CapacityDelays, n.Time.Sub(c.Time))
				break
			}
		}
	}
	if len(res.CapacityDelays) > 0 {
		d := slices.Clone(res.CapacityDelays)
		slices.Sort(d)
		res.CapP50, res.CapP99, res.CapMax = pct(d, 50), pct(d, 99), d[len(d)-1]
	}
	return res, nil
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(min(i, len(sorted))-1, 0)]
}

// Print writes the result.
func (r *RunPodResult) Print(w io.Writer) {
	c := r.Cfg
	fmt.Fprintf(w, "workload: %d workers, 5xx rate %.0f%%, 429 rate %.0f%%, budget %d per %s, %d capacity refusals, tick %s\n",
		c.Workers, c.Rate5xx*100, c.Rate429*100, c.Quota, c.Window, c.CapacityErrors, c.Tick)
	fmt.Fprintf(w, "spawn:     %d pods in %s = %.1f spawns/s\n", c.Workers, r.Spawn.Round(time.Millisecond), r.SpawnsPerSec)
	fmt.Fprintf(w, "terminate: %d pods in %s = %.1f/s (boot-timeout after a restart with min 0)\n", c.Workers, r.Terminate.Round(time.Millisecond), r.EndsPer)
	fmt.Fprintf(w, "pods created: %d (create requests reaching the endpoint %d)\n", r.Created, r.Attempts)
	fmt.Fprintf(w, "calls: create %d, get %d, list %d, delete %d, catalog %d\n", r.Calls[fakerunpod.RouteCreate], r.Calls[fakerunpod.RouteGet],
		r.Calls[fakerunpod.RouteList], r.Calls[fakerunpod.RouteDelete], r.Calls[fakerunpod.RouteCatalog])
	fmt.Fprintf(w, "create+get calls per worker lifetime: %.2f (target ≤ 3); list calls during spawn: %d over ~%d ticks\n",
		r.CreateGetPerWorker, r.Lists, r.Ticks)
	fmt.Fprintf(w, "capacity error → next candidate's create: n=%d p50 %s p99 %s max %s (target ≤ one tick, %s)\n",
		len(r.CapacityDelays), r.CapP50, r.CapP99, r.CapMax, c.Tick)
	fmt.Fprintf(w, "rate limit: max %d requests in one window (budget %d), %d refused over budget, %d faults injected\n",
		r.MaxInWindow, c.Quota, r.OverBudget, r.Injected)
}
