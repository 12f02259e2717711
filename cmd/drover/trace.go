package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/sim"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/dbopen"
	"github.com/spf13/cobra"
)

// exportPage is how many tasks one list call reads.
const exportPage = 1000

func init() {
	traceCmd := &cobra.Command{Use: "trace", Short: "Work with task traces for drover simulate"}
	var (
		since              time.Duration
		db, traceOut, wOut string
	)
	export := &cobra.Command{
		Use:   "export",
		Short: "Write the trace of real tasks and a world fitted from real workers, for drover simulate",
		Long: `Read the tasks and workers created in the last --since (24h) from the database
(--db URL) or from a running server (--server, with the operator token), and
write --trace-out (arrival, owner, type, pool, priority and measured run time
of every finished task; a task failed for losing max_lost workers is marked
poison) and --world-out (a world YAML fitted from the workers: lognormal boot
time from create to ready, the never-boot fraction, the crash rate per
instance-hour, the mean price). Replay them with:

  drover simulate --trace trace.csv --world world.yaml --config drover.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since <= 0 || since > 90*24*time.Hour {
				return badInput{fmt.Errorf("--since: must be between 1s and 2160h (got %s)", since)}
			}
			ctx := cmd.Context()
			var (
				tasks   []*core.Task
				workers []*core.Worker
				err     error
			)
			if db != "" {
				tasks, workers, err = exportFromStore(ctx, db, since)
			} else {
				tasks, workers, err = exportFromServer(ctx, cmd)
			}
			if err != nil {
				return err
			}
			// Times come from the data: the window ends now (wall clock,
			// CLI wiring only) and starts --since before.
			now := time.Now().UTC()
			from := now.Add(-since)
			trace, world, st := sim.Export(tasks, workers, from, now)
			if len(trace) == 0 {
				return fmt.Errorf("trace export: no finished task was created in the last %s", since)
			}
			var tb, wb bytes.Buffer
			if err := sim.WriteTrace(&tb, trace); err != nil {
				return err
			}
			if err := sim.WriteWorld(&wb, world, st, from, now); err != nil {
				return err
			}
			if err := os.WriteFile(traceOut, tb.Bytes(), 0o644); err != nil {
				return fmt.Errorf("write trace: %w", err)
			}
			if err := os.WriteFile(wOut, wb.Bytes(), 0o644); err != nil {
				return fmt.Errorf("write world: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d tasks, %d unfinished left out) and %s (%d workers, %d boot samples)\n",
				traceOut, st.Tasks, st.Skipped, wOut, st.Workers, st.BootSamples)
			return nil
		},
	}
	f := export.Flags()
	f.DurationVar(&since, "since", 24*time.Hour, "export tasks and workers created this long ago or later")
	f.StringVar(&db, "db", "", "read from this database (sqlite://… or postgres://…) instead of a server")
	f.StringVar(&traceOut, "trace-out", "trace.csv", "trace CSV to write")
	f.StringVar(&wOut, "world-out", "world.yaml", "world YAML to write")
	addClientFlags(export)
	traceCmd.AddCommand(export)
	rootCmd.AddCommand(traceCmd)
}

var exportWorkerStates = []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting,
	core.WorkerReady, core.WorkerDraining, core.WorkerTerminating, core.WorkerTerminated, core.WorkerFailed}

// exportFromStore pages through the tasks newest first until they are
// older than since, and reads every worker.
func exportFromStore(ctx context.Context, url string, since time.Duration) ([]*core.Task, []*core.Worker, error) {
	st, err := dbopen.Open(ctx, url, false)
	if err != nil {
		return nil, nil, fmt.Errorf("--db: %w", err)
	}
	defer st.Close()
	from := time.Now().Add(-since)
	var tasks []*core.Task
	p := &store.TaskListParams{Limit: exportPage}
	for {
		page, err := st.TaskList(ctx, p)
		if err != nil {
			return nil, nil, fmt.Errorf("trace export: list tasks: %w", err)
		}
		tasks = append(tasks, page...)
		if len(page) < exportPage || page[len(page)-1].CreatedAt.Before(from) {
			break
		}
		last := page[len(page)-1].ID
		p.BeforeID = &last
	}
	workers, err := st.WorkerList(ctx, &store.WorkerListParams{States: exportWorkerStates})
	if err != nil {
		return nil, nil, fmt.Errorf("trace export: list workers: %w", err)
	}
	return tasks, workers, nil
}

// exportFromServer does the same through the operator API.
func exportFromServer(ctx context.Context, cmd *cobra.Command) ([]*core.Task, []*core.Worker, error) {
	c, err := newCLIClient(cmd)
	if err != nil {
		return nil, nil, err
	}
	since, _ := cmd.Flags().GetDuration("since")
	from := time.Now().Add(-since)
	var tasks []*core.Task
	f := wire.TaskFilter{Limit: exportPage}
	for {
		page, err := c.Tasks(ctx, f)
		if err != nil {
			return nil, nil, fmt.Errorf("trace export: %w", err)
		}
		tasks = append(tasks, page...)
		if len(page) < exportPage || page[len(page)-1].CreatedAt.Before(from) {
			break
		}
		f.Before = page[len(page)-1].ID.String()
	}
	ws, err := c.Workers(ctx, wire.WorkerFilter{States: exportWorkerStates, Limit: exportPage})
	if err != nil {
		return nil, nil, fmt.Errorf("trace export: %w", err)
	}
	return tasks, ws, nil
}
