package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/spf13/cobra"
)

func init() {
	var (
		worker, task string
		after        int64
		limit        int
		asJSON       bool
		follows      bool
	)
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Show output lines shipped by agents, for one task or one worker",
		Long: `Print the stdout/stderr lines of a task's handler runs (--task ID) or everything a
worker's agent shipped (--worker ID), oldest first. --after ID pages on from a line id.
--follow keeps printing new lines as they arrive (resuming after the last one shown when
the server comes back).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (worker == "") == (task == "") {
				return errors.New("logs: give exactly one of --task ID or --worker ID")
			}
			c, err := newCLIClient(cmd)
			if err != nil {
				return err
			}
			lines, err := c.LogLines(cmd.Context(), wire.LogFilter{TaskID: task, WorkerID: worker, AfterID: after, Limit: limit})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON && !follows {
				return printJSON(out, lines)
			}
			printLine := func(l *wire.LogLine) {
				if asJSON {
					b, _ := json.Marshal(l)
					fmt.Fprintln(out, string(b))
					return
				}
				fmt.Fprintf(out, "%s %-6s %s %s\n", l.Time.Local().Format("15:04:05.000"), l.Stream, dash(shortID(l.TaskID)), l.Line)
			}
			last := after
			for _, l := range lines {
				printLine(l)
				last = max(last, l.ID)
			}
			if !follows {
				return nil
			}
			return followLogs(cmd.Context(), c, cmd.ErrOrStderr(), wire.LogFilter{TaskID: task, WorkerID: worker, AfterID: last}, printLine)
		},
	}
	f := cmd.Flags()
	f.StringVar(&task, "task", "", "lines of this task id")
	f.StringVar(&worker, "worker", "", "lines shipped by this worker id")
	f.Int64Var(&after, "after", 0, "only lines with an id greater than this")
	f.IntVar(&limit, "limit", 1000, "at most this many lines (1..10000)")
	f.BoolVar(&asJSON, "json", false, "print JSON (one object per line with --follow)")
	f.BoolVarP(&follows, "follow", "f", false, "keep printing new lines until interrupted")
	addClientFlags(cmd)
	rootCmd.AddCommand(cmd)
}
