package main

import (
	"github.com/droverhq/drover/internal/bench"
	"github.com/spf13/cobra"
)

var benchStatusCmd = &cobra.Command{
	Use:   "status",
	Short: "Measure `drover status` and `drover why` over a large fleet and history",
	Long: `Pre-load --workers ready workers (each running one task), --tasks tasks (--queued
queued, the rest succeeded over the last 24 hours) and --events events over the last 24
hours, then time --builds status reports and why answers (task, worker, pool) on them.

Without --db the benchmark uses a fresh SQLite file in a temporary directory. With --db the
database must be empty: use a fresh one. The rows stay behind; --reuse times the reports
again over a database (or --db sqlite://FILE) an earlier run loaded, without loading it again
(pass the same sizes).`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		f := cmd.Flags()
		url, _ := f.GetString("db")
		var cfg bench.StatusConfig
		cfg.Workers, _ = f.GetInt("workers")
		cfg.Tasks, _ = f.GetInt("tasks")
		cfg.Queued, _ = f.GetInt("queued")
		cfg.Events, _ = f.GetInt("events")
		cfg.Builds, _ = f.GetInt("builds")
		cfg.Reuse, _ = f.GetBool("reuse")
		st, done, err := openBenchStore(cmd, "status", url)
		if err != nil {
			return err
		}
		defer done()
		cfg.Progress = cmd.ErrOrStderr()
		res, err := bench.RunStatus(cmd.Context(), st, cfg)
		if err != nil {
			return err
		}
		res.Print(cmd.OutOrStdout())
		return nil
	},
}

func init() {
	f := benchStatusCmd.Flags()
	f.String("db", "", "database URL (default: a fresh SQLite file in a temporary directory)")
	f.Int("workers", 10000, "ready workers, each running one task")
	f.Int("tasks", 1000000, "tasks to pre-load")
	f.Int("queued", 20000, "of which queued")
	f.Int("events", 1000000, "events to pre-load")
	f.Int("builds", 20, "status reports (and why answers) to time")
	f.Bool("reuse", false, "time the reports over the fleet an earlier run loaded into --db (no pre-load)")
	benchCmd.AddCommand(benchStatusCmd)
}
