package main

import (
	"fmt"
	"os"

	"github.com/droverhq/drover/internal/bench"
	"github.com/spf13/cobra"
)

var benchTickCmd = &cobra.Command{
	Use:   "tick",
	Short: "Measure one control-loop tick over a large simulated fleet",
	Long: `Pre-load --tasks tasks and --workers ready workers (rows plus sim-provider
instances; --busy of them running one task each, all by default), then time --ticks orchestrator
ticks (after one warm-up) on a fixed fake clock, so every tick is the same
steady-state pass: observe, reconcile, advance, decide. Then run the loop and
time --wakes submits to the spawn decision of the tick each submit wakes.

Without --db the benchmark uses a fresh SQLite file in a temporary directory.
With --db the database must have no live workers (the orchestrator reconciles
every worker row it sees): use a fresh database. The rows stay behind.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		f := cmd.Flags()
		url, _ := f.GetString("db")
		var cfg bench.TickConfig
		cfg.Workers, _ = f.GetInt("workers")
		cfg.Tasks, _ = f.GetInt("tasks")
		cfg.Ticks, _ = f.GetInt("ticks")
		cfg.Wakes, _ = f.GetInt("wakes")
		cfg.Busy, _ = f.GetInt("busy")
		for name, v := range map[string]int{"workers": cfg.Workers, "tasks": cfg.Tasks, "ticks": cfg.Ticks} {
			if v < 1 {
				return fmt.Errorf("--%s must be at least 1 (got %d)", name, v)
			}
		}
		if cfg.Wakes < 0 {
			return fmt.Errorf("--wakes must be 0 or more (got %d)", cfg.Wakes)
		}
		st, done, err := openBenchStore(cmd, "tick", url)
		if err != nil {
			return err
		}
		defer done()
		cfg.Progress = cmd.ErrOrStderr()
		if path, _ := f.GetString("tick-cpuprofile"); path != "" {
			pf, err := os.Create(path)
			if err != nil {
				return fmt.Errorf("--tick-cpuprofile: %w", err)
			}
			defer pf.Close()
			cfg.TickProfile = pf
		}
		res, err := bench.RunTick(cmd.Context(), st, cfg)
		if err != nil {
			return err
		}
		res.Print(cmd.OutOrStdout())
		return nil
	},
}

func init() {
	f := benchTickCmd.Flags()
	f.String("db", "", "database URL (default: a fresh SQLite file in a temporary directory)")
	f.Int("workers", 10000, "ready workers (and sim instances)")
	f.Int("busy", -1, "workers running one task each (claimed during set-up); -1 = all")
	f.Int("tasks", 1000000, "tasks to pre-load (the rest beyond --workers stay queued)")
	f.Int("ticks", 10, "ticks to time after one warm-up tick")
	f.Int("wakes", 5, "submits whose wake-up → spawn decision latency is timed")
	f.String("tick-cpuprofile", "", "write a CPU profile of the measured ticks only to this file (go tool pprof)")
	benchCmd.AddCommand(benchTickCmd)
}
