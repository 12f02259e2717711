package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"

	"github.com/droverhq/drover/internal/bench"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/dbopen"
	"github.com/spf13/cobra"
)

// openBenchStore opens (and migrates) the benchmark's store: url, or a fresh
// SQLite file in a temporary directory when url is empty. It starts a CPU
// profile when --cpuprofile is set, prints the (redacted) database, and
// returns a function that stops the profile and closes everything.
func openBenchStore(cmd *cobra.Command, name, url string) (store.Store, func(), error) {
	var cleanup []func()
	done := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	if url == "" {
		dir, err := os.MkdirTemp("", "drover-bench-"+name+"-")
		if err != nil {
			return nil, nil, fmt.Errorf("bench %s: temp dir: %w", name, err)
		}
		cleanup = append(cleanup, func() { _ = os.RemoveAll(dir) })
		url = "sqlite://" + filepath.Join(dir, "bench.db")
	}
	if f := cmd.Flags().Lookup("cpuprofile"); f != nil && f.Value.String() != "" {
		pf, err := os.Create(f.Value.String())
		if err != nil {
			done()
			return nil, nil, fmt.Errorf("bench %s: cpu profile: %w", name, err)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			_ = pf.Close()
			done()
			return nil, nil, fmt.Errorf("bench %s: cpu profile: %w", name, err)
		}
		cleanup = append(cleanup, func() { pprof.StopCPUProfile(); _ = pf.Close() })
	}
	st, err := dbopen.Open(cmd.Context(), url, true)
	if err != nil {
		done()
		return nil, nil, err
	}
	cleanup = append(cleanup, func() { _ = st.Close() })
	fmt.Fprintf(cmd.OutOrStdout(), "database: %s\n", dbopen.Redact(url))
	return st, done, nil
}

// benchCmd is the parent of the benchmarks (`drover bench queue`, and the
// ones other files of this package add with benchCmd.AddCommand).
var benchCmd = &cobra.Command{
	Use:   "bench",
	Short: "Run benchmarks against a real store or server",
}

var benchQueueCmd = &cobra.Command{
	Use:   "queue",
	Short: "Measure claim and complete throughput of the task store",
	Long: `Pre-load --tasks no-op tasks (batched inserts), register --claimers workers
in state ready, then run one claim/complete loop per worker: claim up to
--batch tasks, complete them in one call, until every task is done. Prints
tasks/s and the p50/p99 latency of claims and completions, and verifies that
every task succeeded exactly once.

--via store (default) calls the store directly, one statement per claimer's
call; --via queue goes through package queue as the API does: the claims
waiting at the same time share one statement (the claim dispatcher) and
completions are group-committed.

Without --db the benchmark uses a fresh SQLite file in a temporary directory.
On a shared database the tasks go to a fresh pool named bench-<random>, so no
other task is touched; the rows stay behind.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		f := cmd.Flags()
		url, _ := f.GetString("db")
		var cfg bench.QueueConfig
		cfg.Tasks, _ = f.GetInt("tasks")
		cfg.Claimers, _ = f.GetInt("claimers")
		cfg.Batch, _ = f.GetInt("batch")
		cfg.Owners, _ = f.GetInt("owners")
		cfg.OwnerLimit, _ = f.GetInt("owner-limit")
		cfg.Via, _ = f.GetString("via")
		for name, v := range map[string]int{"tasks": cfg.Tasks, "claimers": cfg.Claimers, "batch": cfg.Batch, "owners": cfg.Owners} {
			if v < 1 {
				return fmt.Errorf("--%s must be at least 1 (got %d)", name, v)
			}
		}
		st, done, err := openBenchStore(cmd, "queue", url)
		if err != nil {
			return err
		}
		defer done()
		res, err := bench.RunQueue(cmd.Context(), st, cfg)
		if err != nil {
			return err
		}
		res.Print(cmd.OutOrStdout())
		return nil
	},
}

func init() {
	f := benchQueueCmd.Flags()
	f.String("db", "", "database URL (default: a fresh SQLite file in a temporary directory)")
	f.Int("tasks", 10000, "tasks to pre-load and work")
	f.Int("claimers", 8, "concurrent claim/complete loops (one ready worker each)")
	f.Int("batch", 1, "tasks per claim")
	f.Int("owners", 1, "owners the tasks are spread over")
	f.Int("owner-limit", 0, "running tasks per owner; 0 = unlimited")
	f.String("via", "store", "path of the claims and completions: store (one call per claimer) or queue (claim dispatcher and group-committed completions, as the API)")
	f.String("cpuprofile", "", "write a CPU profile of the benchmark process to this file (go tool pprof)")
	benchCmd.AddCommand(benchQueueCmd)
	rootCmd.AddCommand(benchCmd)
}
