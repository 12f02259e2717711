package main

import (
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/spf13/cobra"
)

func init() {
	var (
		kinds              []string
		pool, worker, task string
		since              time.Duration
		limit              int
		asJSON             bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the event log (newest last)",
		Long: `Print events — every state change and scaling decision with its reason —
filtered by --kind, --pool, --worker, --task and --since.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newCLIClient(cmd)
			if err != nil {
				return err
			}
			if err := checkLimit("events", limit, 10000); err != nil {
				return err
			}
			f := wire.EventFilter{Kinds: kinds, Pool: pool, WorkerID: worker, TaskID: task, Limit: limit}
			if since > 0 {
				f.Since = time.Now().Add(-since)
			}
			evs, err := c.Events(cmd.Context(), f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, evs)
			}
			tw := newTable(out)
			fmt.Fprintln(tw, "TIME\tKIND\tPOOL\tWORKER\tTASK\tMESSAGE")
			// The API answers newest first; a log reads oldest first.
			for i := len(evs) - 1; i >= 0; i-- {
				e := evs[i]
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Kind,
					dash(e.Pool), dash(shortID(e.WorkerID)), dash(shortID(e.TaskID)), e.Message)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&kinds, "kind", nil, "only these kinds (e.g. worker.failed,scale.up)")
	f.StringVar(&pool, "pool", "", "only events of this pool")
	f.StringVar(&worker, "worker", "", "only events of this worker id")
	f.StringVar(&task, "task", "", "only events of this task id")
	f.DurationVar(&since, "since", 0, "only events newer than this (e.g. 1h)")
	f.IntVar(&limit, "limit", 100, "at most this many events (1..10000)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	addClientFlags(cmd)
	rootCmd.AddCommand(cmd)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
