package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/status"
	"github.com/spf13/cobra"
)

func init() {
	var (
		asJSON bool
		watch  bool
		every  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Explain the fleet: verdict, queue, breakers, workers, failures, start-up, spend, hints, actions",
		Long: `Print the fleet's status report: a verdict (HEALTHY, DEGRADED, SPAWNING BLOCKED,
NO CAPACITY, NO WORKERS) with its reason, the queue, workers by state, every breaker with
its numbers, the worker table with health labels, the failure timeline, start-up times per
placement, spend, hints and action items. --json prints the same content as JSON (schema:
docs/status.schema.json); --watch redraws it every --interval until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if every < time.Second {
				return fmt.Errorf("--interval: must be at least 1s (got %s)", every)
			}
			c, err := newCLIClient(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			show := func() error {
				raw, err := c.Status(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					_, err := fmt.Fprintln(out, string(raw))
					return err
				}
				var st status.Report
				if err := json.Unmarshal(raw, &st); err != nil {
					return fmt.Errorf("decode status: %w", err)
				}
				if watch {
					fmt.Fprint(out, "\033[H\033[2J") // clear the terminal
				}
				_, err = fmt.Fprint(out, st.Text())
				return err
			}
			if err := show(); err != nil || !watch {
				return err
			}
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-t.C:
					if err := show(); err != nil {
						return err
					}
				}
			}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw the status every --interval until interrupted")
	cmd.Flags().DurationVar(&every, "interval", 5*time.Second, "how often --watch redraws")
	addClientFlags(cmd)
	rootCmd.AddCommand(cmd)
}
