package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/spf13/cobra"
)

func init() {
	var (
		kinds              []string
		pool, worker, task string
		since              string
		limit              int
		asJSON, follows    bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the event log (newest last)",
		Long: `Print events — every state change and scaling decision with its reason —
filtered by --kind, --pool, --worker, --task and --since. --follow keeps printing new
events as they happen (resuming after the last one shown when the server comes back).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newCLIClient(cmd)
			if err != nil {
				return err
			}
			f := wire.EventFilter{Kinds: kinds, Pool: pool, WorkerID: worker, TaskID: task, Limit: limit}
			if f.Since, err = parseSince(since, time.Now()); err != nil {
				return err
			}
			evs, err := c.Events(cmd.Context(), f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON && !follows {
				return printJSON(out, evs)
			}
			tw := newTable(out)
			printEvent := func(e *wire.Event) {
				if asJSON {
					b, _ := json.Marshal(e)
					fmt.Fprintln(tw, string(b))
					return
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Kind,
					dash(e.Pool), dash(shortID(e.WorkerID)), dash(shortID(e.TaskID)), e.Message)
			}
			if !asJSON {
				fmt.Fprintln(tw, "TIME\tKIND\tPOOL\tWORKER\tTASK\tMESSAGE")
			}
			// The API answers newest first; a log reads oldest first.
			var last int64
			for i := len(evs) - 1; i >= 0; i-- {
				printEvent(evs[i])
				last = max(last, evs[i].ID)
			}
			if err := tw.Flush(); err != nil || !follows {
				return err
			}
			if last == 0 {
				// Nothing matched yet: start after the newest event of all.
				newest, err := c.Events(cmd.Context(), wire.EventFilter{Limit: 1})
				if err != nil {
					return err
				}
				if len(newest) > 0 {
					last = newest[0].ID
				}
			}
			return followEvents(cmd.Context(), c, cmd.ErrOrStderr(), f, last, func(e *wire.Event) {
				printEvent(e)
				_ = tw.Flush()
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&kinds, "kind", nil, "only these kinds (e.g. worker.failed,scale.up)")
	f.StringVar(&pool, "pool", "", "only events of this pool")
	f.StringVar(&worker, "worker", "", "only events of this worker id")
	f.StringVar(&task, "task", "", "only events of this task id")
	f.StringVar(&since, "since", "", "only events newer than this: a duration (1h) or an RFC 3339 time")
	f.BoolVarP(&follows, "follow", "f", false, "keep printing new events until interrupted")
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
