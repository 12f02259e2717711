package main

import (
	"fmt"

	"github.com/droverhq/drover/internal/bench"
	"github.com/spf13/cobra"
)

var benchRunPodCmd = &cobra.Command{
	Use:   "runpod",
	Short: "Measure spawning and terminating workers through the RunPod provider against a fake RunPod",
	Long: `Start a fake RunPod (REST v2) on loopback with random 5xx and 429 answers,
an advertised rate-limit budget that it enforces, and a first candidate that
refuses --capacity-errors creates for capacity. Run the server's wiring with a
RunPod pool of min = max = --workers until every pod exists, then restart it
with min 0 and a 1 s boot timeout so that every worker fails and its pod is
deleted. Prints spawns/s, terminations/s, provider calls per worker, the
capacity error → next candidate delay and the most requests seen in one
rate-limit window. Uses a fresh SQLite file in a temporary directory; nothing
leaves the machine.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		f := cmd.Flags()
		var cfg bench.RunPodConfig
		cfg.Workers, _ = f.GetInt("workers")
		cfg.Rate5xx, _ = f.GetFloat64("rate-5xx")
		cfg.Rate429, _ = f.GetFloat64("rate-429")
		cfg.Quota, _ = f.GetInt("quota")
		cfg.Window, _ = f.GetDuration("window")
		cfg.CapacityErrors, _ = f.GetInt("capacity-errors")
		cfg.Tick, _ = f.GetDuration("tick")
		cfg.MaxSpawnPerTick, _ = f.GetInt("max-spawn-per-tick")
		switch {
		case cfg.Workers < 1 || cfg.Workers > 5000:
			return fmt.Errorf("--workers must be between 1 and 5000 (got %d)", cfg.Workers)
		case cfg.Rate5xx < 0 || cfg.Rate5xx > 0.5 || cfg.Rate429 < 0 || cfg.Rate429 > 0.5:
			return fmt.Errorf("--rate-5xx and --rate-429 must be between 0 and 0.5 (got %g, %g)", cfg.Rate5xx, cfg.Rate429)
		case cfg.Quota < 10:
			return fmt.Errorf("--quota must be at least 10 (got %d)", cfg.Quota)
		case cfg.Window < 1e9 || cfg.Window%1e9 != 0:
			return fmt.Errorf("--window must be whole seconds, at least 1s (got %s)", cfg.Window)
		case cfg.CapacityErrors < 0:
			return fmt.Errorf("--capacity-errors must be 0 or more (got %d)", cfg.CapacityErrors)
		case cfg.Tick < 10e6:
			return fmt.Errorf("--tick must be at least 10ms (got %s)", cfg.Tick)
		case cfg.MaxSpawnPerTick < 1 || cfg.MaxSpawnPerTick > 1000:
			return fmt.Errorf("--max-spawn-per-tick must be between 1 and 1000 (got %d)", cfg.MaxSpawnPerTick)
		}
		res, err := bench.RunRunPod(cmd.Context(), cfg)
		if err != nil {
			return err
		}
		res.Print(cmd.OutOrStdout())
		return nil
	},
}

func init() {
	f := benchRunPodCmd.Flags()
	f.Int("workers", 200, "workers spawned and terminated")
	f.Float64("rate-5xx", 0.05, "fraction of requests the fake answers 503")
	f.Float64("rate-429", 0.05, "fraction of requests the fake answers 429 (Retry-After 1)")
	f.Int("quota", 300, "advertised requests per window (RateLimit-Policy q)")
	f.Duration("window", 10e9, "advertised rate-limit window (RateLimit-Policy w)")
	f.Int("capacity-errors", 40, "creates the first candidate refuses for capacity")
	f.Duration("tick", 500e6, "control-loop tick")
	f.Int("max-spawn-per-tick", 50, "the pool's max_spawn_per_tick")
	benchCmd.AddCommand(benchRunPodCmd)
}
