package main

import (
	"context"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

type (
	contextT = context.Context
	uuidT    = uuid.UUID
)

func parseUUIDArg(what, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%s %q is not a UUID", what, s)
	}
	return id, nil
}

func init() {
	var (
		states []string
		pool   string
		all    bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "workers",
		Short: "List workers (live ones unless --all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newCLIClient(cmd)
			if err != nil {
				return err
			}
			f := wire.WorkerFilter{Pool: pool, Live: !all && len(states) == 0}
			for _, s := range states {
				f.States = append(f.States, wire.WorkerState(s))
			}
			ws, err := c.Workers(cmd.Context(), f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, ws)
			}
			now := time.Now()
			tw := newTable(out)
			fmt.Fprintln(tw, "ID\tPOOL\tSTATE\tPLACEMENT\tAGE\tHEARTBEAT\tRUNNING\tDONE\tFAILED\t$/H\tREASON")
			for _, w := range ws {
				hb := "never"
				if w.LastHeartbeatAt != nil {
					hb = ago(now, *w.LastHeartbeatAt) + " ago"
				}
				reason := w.Reason
				if w.Failure != "" {
					reason = string(w.Failure) + ": " + reason
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.2f\t%s\n", w.ID, w.Pool, w.State, w.Placement,
					ago(now, w.CreatedAt), hb, w.Running, w.TasksDone, w.TasksFailed, w.PricePerHour, oneLine(reason, 60))
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&states, "state", nil, "only workers in these states")
	f.StringVar(&pool, "pool", "", "only workers of this pool")
	f.BoolVar(&all, "all", false, "include terminated and failed workers")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	addClientFlags(cmd)

	var reason string
	action := func(use, short string, do func(*client.Client, context.Context, uuid.UUID, string) (*wire.Worker, error)) *cobra.Command {
		c := &cobra.Command{
			Use:   use + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := newCLIClient(cmd)
				if err != nil {
					return err
				}
				id, err := parseUUIDArg("worker id", args[0])
				if err != nil {
					return err
				}
				w, err := do(c, cmd.Context(), id, reason)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "worker %s is %s\n", w.ID, w.State)
				return nil
			},
		}
		c.Flags().StringVar(&reason, "reason", "", "why (recorded in the event log)")
		addClientFlags(c)
		return c
	}
	cmd.AddCommand(
		action("drain", "Drain a worker: it finishes its tasks, takes no more, and is terminated", (*client.Client).Drain),
		action("terminate", "Terminate a worker now (an operator action, not a failure)", (*client.Client).Terminate),
	)
	rootCmd.AddCommand(cmd)
}
