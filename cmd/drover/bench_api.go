package main

import (
	"github.com/droverhq/drover/internal/bench"
	"github.com/spf13/cobra"
)

var benchAPICmd = &cobra.Command{
	Use:   "api",
	Short: "Measure the HTTP API with simulated agents: claim+complete, heartbeats, submit→start latency",
	Long: `Start the API in-process on a loopback port and drive --agents simulated
agents over real HTTP, each a registered worker with its own token:

  1. claim+complete: --tasks no-op tasks (submitted in batches of 1,000),
     every agent looping claims (up to --batch tasks) that carry the
     completions of what its previous claim granted, as the real agent
     does (one request per batch), until all are done;
  2. heartbeats: every agent holds one lease and runs --heartbeat-inflight
     loops heartbeating back to back for --heartbeat-for;
  3. submit→start: every agent parks in a long-poll claim; one task is
     submitted at a time (--samples) and timed until an agent has it.

Then verifies that every task succeeded exactly once. Without --db the
benchmark uses a fresh SQLite file; on a shared database it uses a fresh
pool bench-api-<random>, so no other task is touched (the rows stay).`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		f := cmd.Flags()
		url, _ := f.GetString("db")
		var cfg bench.APIConfig
		cfg.Agents, _ = f.GetInt("agents")
		cfg.Tasks, _ = f.GetInt("tasks")
		cfg.Samples, _ = f.GetInt("samples")
		cfg.Batch, _ = f.GetInt("batch")
		cfg.HeartbeatFor, _ = f.GetDuration("heartbeat-for")
		cfg.HeartbeatInFlight, _ = f.GetInt("heartbeat-inflight")
		cfg.MemProfile, _ = f.GetString("memprofile")
		st, done, err := openBenchStore(cmd, "api", url)
		if err != nil {
			return err
		}
		defer done()
		res, err := bench.RunAPI(cmd.Context(), st, cfg)
		if err != nil {
			return err
		}
		res.Print(cmd.OutOrStdout())
		return nil
	},
}

func init() {
	f := benchAPICmd.Flags()
	f.String("db", "", "database URL (default: a fresh SQLite file in a temporary directory)")
	f.Int("agents", 256, "simulated agents (registered workers) talking HTTP")
	f.Int("tasks", 20000, "tasks of the claim+complete phase")
	f.Int("samples", 200, "submit→start latency samples")
	f.Int("batch", 1, "tasks per claim in the throughput phase (an agent with that many slots; completed with one batched request)")
	f.Duration("heartbeat-for", 0, "length of the heartbeat phase (default 5s)")
	f.Int("heartbeat-inflight", 8, "heartbeat loops per agent (a heartbeat waits for its group commit, so capacity needs many in flight)")
	f.String("cpuprofile", "", "write a CPU profile of the benchmark process to this file")
	f.String("memprofile", "", "write the process's cumulative allocation profile to PREFIX.load, .claim, .heartbeat and .start at the end of each phase; diff one phase against the one before (go tool pprof -sample_index=alloc_space -base PREFIX.load PREFIX.claim)")
	benchCmd.AddCommand(benchAPICmd)
}
