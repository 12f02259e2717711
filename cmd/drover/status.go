package main

import (
	"encoding/json"
	"fmt"

	"github.com/droverhq/drover/internal/orchestrator"
	"github.com/spf13/cobra"
)

func init() {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Explain the fleet: verdict, queue, breakers, workers, recent failures, hints",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newCLIClient(cmd)
			if err != nil {
				return err
			}
			raw, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				_, err := fmt.Fprintln(out, string(raw))
				return err
			}
			var st orchestrator.Status
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("decode status: %w", err)
			}
			_, err = fmt.Fprint(out, st.Text())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	addClientFlags(cmd)
	rootCmd.AddCommand(cmd)
}
