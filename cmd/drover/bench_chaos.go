package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/droverhq/drover/internal/chaos"
	"github.com/spf13/cobra"
)

var benchChaosCmd = &cobra.Command{
	Use:   "chaos",
	Short: "Run several replicas, agents and thousands of tasks through failures and check nothing is lost",
	Long: `Start --replicas drover serve processes (this binary) on one PostgreSQL behind a
loopback round-robin load balancer, a local pool of up to --agents agents whose
handler sleeps 0.2–2 s per task, and submit --tasks tasks with dependencies and
idempotency keys (a slice is submitted twice); 5% of the tasks fail their first
attempt. After a calm phase (the first 10% of the tasks), SIGKILL a random agent
every few seconds, SIGKILL the leader replica three times (restarting it), SIGSTOP
the leader past its lease (then SIGCONT) and restart PostgreSQL once.

At the end print a table: tasks lost, tasks completed twice, duplicate spawns and
leaked agent processes (each must be 0: the command exits non-zero otherwise),
reruns by cause, failover times, requeue delays after an agent kill and the
throughput during chaos against the calm phase.

Without --db the harness starts a private PostgreSQL cluster of its own (initdb and
pg_ctl from /usr/lib/postgresql/*/bin, run as the postgres user when root) on a free
port and restarts it with pg_ctl. With --db give an empty database and, to restart
it, --pg-restart (a shell command that restarts that server). The run's directory
(configs, logs, markers) is kept when an invariant breaks.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		f := cmd.Flags()
		cfg := chaos.Config{Progress: cmd.ErrOrStderr()}
		cfg.DefaultFaults()
		cfg.Tasks, _ = f.GetInt("tasks")
		cfg.Agents, _ = f.GetInt("agents")
		cfg.Replicas, _ = f.GetInt("replicas")
		cfg.Seed, _ = f.GetInt64("seed")
		cfg.Duration, _ = f.GetDuration("duration")
		cfg.DB, _ = f.GetString("db")
		cfg.PGRestart, _ = f.GetString("pg-restart")
		cfg.Dir, _ = f.GetString("dir")
		asJSON, _ := f.GetBool("json")
		// Zero would mean "the default" to chaos.Config: refuse it here.
		for name, v := range map[string]int{"tasks": cfg.Tasks, "agents": cfg.Agents, "replicas": cfg.Replicas} {
			if v < 1 {
				return fmt.Errorf("--%s must be at least 1 (got %d)", name, v)
			}
		}
		if cfg.Duration <= 0 {
			return fmt.Errorf("--duration must be positive (got %s)", cfg.Duration)
		}
		if cfg.PGRestart != "" && cfg.DB == "" {
			return errors.New("--pg-restart needs --db (without --db the harness restarts its own private cluster)")
		}
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench chaos: find own executable: %w", err)
		}
		cfg.Binary = exe
		// Ctrl-C stops the run cleanly: replicas, agents and the private
		// cluster are stopped before the command returns.
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		res, err := chaos.Run(ctx, cfg)
		if err != nil {
			return fmt.Errorf("bench chaos: %w", err)
		}
		if asJSON {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			if err := enc.Encode(res); err != nil {
				return err
			}
		} else {
			res.Print(cmd.OutOrStdout())
		}
		if !res.OK() {
			return fmt.Errorf("bench chaos: %d invariants broken", len(res.Failures))
		}
		return nil
	},
}

func init() {
	f := benchChaosCmd.Flags()
	f.Int("tasks", 10000, "tasks to submit")
	f.Int("agents", 12, "the pool's max agents")
	f.Int("replicas", 3, "drover serve replicas")
	f.Int64("seed", 1, "seed of every random choice")
	f.Duration("duration", 30*time.Minute, "cap on the whole run; tasks not finished by then count as unfinished")
	f.String("db", "", "PostgreSQL URL of an empty database (default: a private cluster started by the harness)")
	f.String("pg-restart", "", "shell command that restarts the --db server (without it: no restart fault)")
	f.String("dir", "", "directory for configs, logs and markers (default: a temporary one, removed when every invariant holds)")
	f.Bool("json", false, "print the result as JSON")
	benchCmd.AddCommand(benchChaosCmd)
}
