package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/status"
	"github.com/spf13/cobra"
)

func init() {
	cmd := &cobra.Command{
		Use:   "breaker",
		Short: "List, reset or open the placement breakers",
		Long: `Every placement (pool/gpu/region) has a failure-rate breaker. "list" shows each with
its numbers; "reset KEY" closes one and forgets its window; "open KEY" opens one at once
(no spawns on it until its cooldown ends and a canary succeeds).`,
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "Show every breaker with its numbers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newCLIClient(cmd)
			if err != nil {
				return err
			}
			var bl struct {
				Breakers []status.Breaker `json:"breakers"`
			}
			if err := c.Breakers(cmd.Context(), &bl); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, bl)
			}
			tw := newTable(out)
			fmt.Fprintln(tw, "KEY\tSTATE\tNUMBERS")
			for _, b := range bl.Breakers {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", b.Key, b.State, b.Summary)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addClientFlags(list)
	cmd.AddCommand(list)

	for _, action := range []string{"reset", "open"} {
		var reason string
		sub := &cobra.Command{
			Use:   action + " KEY",
			Short: strings.ToUpper(action[:1]) + action[1:] + " the breaker of one placement key (pool/gpu/region)",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := newCLIClient(cmd)
				if err != nil {
					return err
				}
				var b status.Breaker
				if err := c.BreakerSet(cmd.Context(), args[0], action, reason, &b); err != nil {
					var ce *client.Error
					if errors.As(err, &ce) && client.CodeOf(err) == "not_found" {
						return errors.New(ce.Message)
					}
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: %s — %s\n", b.Key, b.State, b.Summary)
				return err
			},
		}
		if action == "open" {
			sub.Flags().StringVar(&reason, "reason", "", "why (shown in status and the event)")
		}
		addClientFlags(sub)
		cmd.AddCommand(sub)
	}
	rootCmd.AddCommand(cmd)
}
