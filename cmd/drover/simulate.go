package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/droverhq/drover/internal/sim"
	"github.com/droverhq/drover/internal/store/dbopen"
	"github.com/spf13/cobra"
)

// badInput is an error in the simulator's inputs: one line, exit status 2,
// nothing run.
type badInput struct{ error }

func (badInput) ExitCode() int { return 2 }

// simulateFlags are the flags of drover simulate.
type simulateFlags struct {
	trace, world, config, vs, timeline, db string
	sets                                   []string
	json                                   bool
}

func init() {
	var f simulateFlags
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Replay a task trace through the real control loop on a virtual clock and price the policy",
		Long: `Replay --trace (a CSV of arrival_s,owner,duration_s,poison and optionally
type,pool,priority) against --config (an ordinary drover.yaml; every pool runs
on the simulated provider) in the cloud described by --world (boot times,
instances that never boot, crashes, capacity outages, price). The real
orchestrator, queue rules and store run on a virtual clock that jumps from one
event to the next. The report gives GPU-hours and dollars against the lower
bound, workers by outcome, task outcomes and waits, breaker trips, and what
poison tasks cost. The same inputs and seed give the same report, byte for
byte.

--set KEY=VALUE overrides a config key (repeatable), --vs OTHER.yaml runs a
second config on the same trace and world and prints both side by side with
ratios, --timeline FILE writes one CSV row per tick, --json prints JSON.
Without --db the run uses a fresh SQLite file in a temporary directory; --db
names an empty database (PostgreSQL) to run on instead.

Bad input (a malformed trace line, an unknown world field, a distribution
with missing parameters, an unknown --set key or a value of the wrong type)
is one line on stderr and exit status 2; nothing runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSimulate(cmd, f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.trace, "trace", "", "trace CSV (required)")
	fl.StringVar(&f.world, "world", "", "world YAML (required)")
	fl.StringVar(&f.config, "config", "", "drover.yaml to simulate (required)")
	fl.StringVar(&f.vs, "vs", "", "a second drover.yaml to compare with --config")
	fl.StringArrayVar(&f.sets, "set", nil, "override a config key, e.g. pools.default.idle_timeout=2m (repeatable; applies to --config and --vs)")
	fl.StringVar(&f.timeline, "timeline", "", "write one CSV row per tick to this file")
	fl.StringVar(&f.db, "db", "", "run on this empty database instead of a temporary SQLite file")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON")
	rootCmd.AddCommand(cmd)
}

func runSimulate(cmd *cobra.Command, f simulateFlags, stdout, stderr io.Writer) error {
	ctx := cmd.Context()
	for name, v := range map[string]string{"trace": f.trace, "world": f.world, "config": f.config} {
		if v == "" {
			return badInput{fmt.Errorf("--%s is required", name)}
		}
	}
	if f.vs != "" && f.db != "" {
		return badInput{fmt.Errorf("--vs runs two simulations, each on a fresh database: leave --db out")}
	}
	if f.vs != "" && f.timeline != "" {
		return badInput{fmt.Errorf("--timeline writes one run's ticks: leave --vs out")}
	}
	tf, err := os.Open(f.trace)
	if err != nil {
		return badInput{fmt.Errorf("--trace: %w", err)}
	}
	trace, err := sim.ParseTrace(tf, f.trace)
	tf.Close()
	if err != nil {
		return badInput{err}
	}
	wdata, err := os.ReadFile(f.world)
	if err != nil {
		return badInput{fmt.Errorf("--world: %w", err)}
	}
	world, err := sim.ParseWorld(wdata, f.world)
	if err != nil {
		return badInput{err}
	}
	loadCfg := func(path string) (*sim.Options, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, badInput{fmt.Errorf("config: %w", err)}
		}
		cfg, err := sim.LoadConfig(data, path, f.sets)
		if err != nil {
			return nil, badInput{err}
		}
		pools := map[string]bool{}
		for name := range cfg.Pools {
			pools[name] = true
		}
		if err := sim.CheckTrace(trace, pools, cfg.Tasks.TypePools, f.trace); err != nil {
			return nil, badInput{err}
		}
		return &sim.Options{Trace: trace, World: world, Config: cfg}, nil
	}
	a, err := loadCfg(f.config)
	if err != nil {
		return err
	}
	var b *sim.Options
	if f.vs != "" {
		if b, err = loadCfg(f.vs); err != nil {
			return err
		}
	}
	if f.timeline != "" {
		out, err := os.Create(f.timeline)
		if err != nil {
			return fmt.Errorf("--timeline: %w", err)
		}
		defer out.Close()
		a.Timeline = out
	}
	if f.db != "" {
		st, err := dbopen.Open(ctx, f.db, true)
		if err != nil {
			return fmt.Errorf("--db: %w", err)
		}
		defer st.Close()
		a.Store = st
	}
	h := sim.Header{Trace: f.trace, World: f.world, Config: f.config, Tasks: len(trace), Seed: world.Seed}
	start := time.Now()
	ra, err := sim.Run(ctx, *a)
	if err != nil {
		return err
	}
	steps := ra.Steps
	var rb *sim.Report
	if b != nil {
		if rb, err = sim.Run(ctx, *b); err != nil {
			return err
		}
		steps += rb.Steps
	}
	wall := time.Since(start)
	fmt.Fprintf(stderr, "simulated %d steps in %.2f s wall (%.0f steps/s)\n", steps, wall.Seconds(), float64(steps)/wall.Seconds())
	switch {
	case f.json && rb == nil:
		return writeJSON(stdout, ra)
	case f.json:
		return writeJSON(stdout, map[string]any{"a": ra, "b": rb, "a_config": f.config, "b_config": f.vs})
	case rb == nil:
		return ra.Print(stdout, h)
	}
	return sim.PrintVs(stdout, h, f.config, f.vs, ra, rb)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
