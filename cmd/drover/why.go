package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/status"
	"github.com/spf13/cobra"
)

func init() {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "why task|worker|pool ID",
		Short: "Explain a task's, worker's or pool's current state from its events",
		Long: `Print the current state of a task, worker or pool in words ("queued 4m12s: owner
alice at limit 5/5") and the chain of events behind it, newest first.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := status.WhyKind(args[0])
			if kind != status.WhyTask && kind != status.WhyWorker && kind != status.WhyPool {
				return fmt.Errorf("why: the first argument must be task, worker or pool (got %q)", args[0])
			}
			c, err := newCLIClient(cmd)
			if err != nil {
				return err
			}
			var rep status.WhyReport
			if err := c.Why(cmd.Context(), string(kind), args[1], &rep); err != nil {
				var ce *client.Error
				if errors.As(err, &ce) && client.CodeOf(err) == "not_found" {
					return errors.New(ce.Message)
				}
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, rep)
			}
			fmt.Fprintf(out, "%s %s: %s\n", rep.Kind, rep.ID, rep.Summary)
			if len(rep.Lines) == 0 {
				fmt.Fprintln(out, "  (no events)")
			}
			for _, l := range rep.Lines {
				ago := time.Duration(l.AgoS * float64(time.Second)).Round(time.Second)
				fmt.Fprintf(out, "  %s  %7s ago  %s\n", l.Time.Local().Format("2006-01-02 15:04:05"), ago, l.Text)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addClientFlags(cmd)
	rootCmd.AddCommand(cmd)
}
