package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/spf13/cobra"
)

func init() {
	var (
		params, paramsFile, owner, pool, idem string
		priority, maxAttempts                 int
		dependsOn                             []string
		timeout                               time.Duration
		wait, asJSON                          bool
	)
	cmd := &cobra.Command{
		Use:   "submit TYPE",
		Short: "Submit a task",
		Long: `Submit one task of TYPE. Params (a JSON object) come from --params, from
--params-file, or from stdin when stdin is not a terminal; none means {}.
With --wait, show a live progress line until the task ends and exit 0 only
when it succeeded.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			req := wire.SubmitRequest{Type: args[0], Owner: owner, Pool: pool, DependsOn: dependsOn, IdempotencyKey: idem}
			switch {
			case params != "" && paramsFile != "":
				return errors.New("submit: give --params or --params-file, not both")
			case params != "":
				req.Params = json.RawMessage(params)
			case paramsFile != "":
				b, err := os.ReadFile(paramsFile)
				if err != nil {
					return fmt.Errorf("submit: read --params-file: %w", err)
				}
				req.Params = b
			default:
				if st, err := os.Stdin.Stat(); err == nil && st.Mode()&os.ModeCharDevice == 0 {
					b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), wire.MaxSubmitBody+1))
					if err != nil {
						return fmt.Errorf("submit: read params from stdin: %w", err)
					}
					if len(b) > 0 {
						req.Params = b
					}
				}
			}
			if len(req.Params) > 0 && !json.Valid(req.Params) {
				return errors.New("submit: params are not valid JSON")
			}
			if f.Changed("priority") {
				req.Priority = &priority
			}
			if f.Changed("max-attempts") {
				req.MaxAttempts = &maxAttempts
			}
			if f.Changed("timeout") {
				d := wire.Duration(timeout)
				req.Timeout = &d
			}
			c, err := newCLIClient(cmd)
			if err != nil {
				return err
			}
			res, err := c.Submit(cmd.Context(), &req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !wait {
				if asJSON {
					return printJSON(out, res)
				}
				note := ""
				if res.Existing {
					note = " (already submitted with this idempotency key)"
				}
				fmt.Fprintf(out, "%s%s\n", res.Task.ID, note)
				return nil
			}
			t, err := waitForTask(cmd.Context(), c, res.Task, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(out, t); err != nil {
					return err
				}
			} else if len(t.Result) > 0 {
				fmt.Fprintln(out, string(t.Result))
			}
			if t.State != "succeeded" {
				return fmt.Errorf("task %s %s: %s", t.ID, t.State, t.Error)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&params, "params", "", "params as a JSON object")
	f.StringVar(&paramsFile, "params-file", "", "read params from this file")
	f.StringVar(&owner, "owner", "", "owner (tenant/user) of the task")
	f.IntVar(&priority, "priority", 0, "priority, -1000..1000 (higher runs first)")
	f.StringVar(&pool, "pool", "", "pool to run in (default: by type, else default)")
	f.StringSliceVar(&dependsOn, "depends-on", nil, "task ids that must succeed first")
	f.IntVar(&maxAttempts, "max-attempts", 0, "handler attempts before the task fails (default from the server)")
	f.DurationVar(&timeout, "timeout", 0, "per-attempt timeout (default from the server)")
	f.StringVar(&idem, "idempotency-key", "", "submit at most once per owner with this key")
	f.BoolVar(&wait, "wait", false, "wait for the task to finish, showing progress; exit 1 unless it succeeded")
	f.BoolVar(&asJSON, "json", false, "print the task as JSON")
	addClientFlags(cmd)
	rootCmd.AddCommand(cmd)
}

// waitForTask polls the task until it is final, rewriting one status line
// on w. Polling starts fast and settles at one request per second.
func waitForTask(ctx context.Context, c *client.Client, t *wire.Task, w io.Writer) (*wire.Task, error) {
	start := time.Now()
	delay := 100 * time.Millisecond
	last := ""
	for {
		line := fmt.Sprintf("%s  %-9s attempt %d  %s", t.ID, t.State, t.Attempt, time.Since(start).Round(time.Second))
		if t.Progress != nil {
			line += fmt.Sprintf("  %3.0f%%", *t.Progress*100)
		}
		if t.ProgressMsg != "" {
			line += "  " + oneLine(t.ProgressMsg, 40)
		}
		if line != last {
			fmt.Fprintf(w, "\r\033[K%s", line)
			last = line
		}
		if t.State.Terminal() {
			fmt.Fprintln(w)
			return t, nil
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(w)
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
		next, err := c.Task(ctx, t.ID)
		if err != nil {
			if client.IsRetryable(err) {
				continue
			}
			fmt.Fprintln(w)
			return nil, err
		}
		t = next
	}
}
