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
		batch                                 string
		priority, maxAttempts, maxLost        int
		dependsOn                             []string
		timeout                               time.Duration
		wait, asJSON                          bool
	)
	var callback string // --callback-url
	cmd := &cobra.Command{
		Use:   "submit TYPE | submit --batch FILE|-",
		Short: "Submit a task, or many from a file",
		Long: `Submit one task of TYPE. Params (a JSON object) come from --params, from
--params-file, or from stdin when stdin is not a terminal; none means {}.
With --wait, show a live progress line until the task ends and exit 0 only
when it succeeded.

With --batch FILE (or - for stdin) submit many tasks: one JSON task per
line, with the fields of POST /v1/tasks ({"type":"render","params":{…},
"priority":5,…}; blank lines are skipped; depends_on may name an earlier
line's task as "#N", N counting tasks from 0). Every line is checked first
and the whole file fails, naming the line, if one is bad; the tasks are
submitted in batches of up to 1,000, each all or nothing. The new task ids
are printed one per line, in file order.`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			if batch != "" {
				if len(args) > 0 || params != "" || paramsFile != "" || wait {
					return errors.New("submit --batch: every task comes from the file; drop TYPE, --params, --params-file and --wait")
				}
				return submitBatch(cmd, batch, asJSON)
			}
			if len(args) != 1 {
				return errors.New("submit: give the task TYPE, or --batch FILE")
			}
			req := wire.SubmitRequest{Type: args[0], Owner: owner, Pool: pool, DependsOn: dependsOn, IdempotencyKey: idem, CallbackURL: callback}
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
			if f.Changed("max-lost") {
				req.MaxLost = &maxLost
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
	f.IntVar(&maxLost, "max-lost", 0, "times the task may lose its worker before it fails (default from the server)")
	f.DurationVar(&timeout, "timeout", 0, "per-attempt timeout (default from the server)")
	f.StringVar(&batch, "batch", "", "submit one JSON task per line of FILE (- for stdin) and print their ids")
	f.StringVar(&idem, "idempotency-key", "", "submit at most once per owner with this key")
	f.StringVar(&callback, "callback-url", "", "POST the task's final state here, signed (see docs/outputs.md)")
	f.BoolVar(&wait, "wait", false, "wait for the task to finish, showing progress; exit 1 unless it succeeded")
	f.BoolVar(&asJSON, "json", false, "print the task as JSON")
	addClientFlags(cmd)
	rootCmd.AddCommand(cmd)
}

// waitForTask polls the task until it is final. On a terminal it rewrites
// one status line on w; elsewhere (a file, a pipe) it writes a plain line
// each time the state, attempt or progress changes, with no control
// characters. Polling starts fast and settles at one request per second.
func waitForTask(ctx context.Context, c *client.Client, t *wire.Task, w io.Writer) (*wire.Task, error) {
	start := time.Now()
	delay := 100 * time.Millisecond
	last := ""
	tty := isTerminal(w)
	for {
		line := fmt.Sprintf("%s  %-9s attempt %d", t.ID, t.State, t.Attempt)
		if tty {
			line += "  " + time.Since(start).Round(time.Second).String()
		}
		if t.Progress != nil {
			line += fmt.Sprintf("  %3.0f%%", *t.Progress*100)
		}
		if t.ProgressMsg != "" {
			line += "  " + oneLine(t.ProgressMsg, 40)
		}
		if line != last {
			if tty {
				fmt.Fprintf(w, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(w, line)
			}
			last = line
		}
		if t.State.Terminal() {
			if tty {
				fmt.Fprintln(w)
			}
			return t, nil
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
		next, err := c.Task(ctx, t.ID)
		if err != nil {
			if client.IsRetryable(err) {
				continue
			}
			if tty {
				fmt.Fprintln(w)
			}
			return nil, err
		}
		t = next
	}
}
