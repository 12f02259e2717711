package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/spf13/cobra"
)

// defaultServerURL is the server the CLI talks to without --server or
// DROVER_SERVER.
const defaultServerURL = "http://127.0.0.1:8080"

// addClientFlags adds --server, --token and --token-file to an operator
// command.
func addClientFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("server", "", "server URL (default $DROVER_SERVER, else "+defaultServerURL+")")
	f.String("token", "", "API token (default $DROVER_TOKEN, else the token file)")
	f.String("token-file", "", "file holding the API token (default $DROVER_TOKEN_FILE, else ./"+operatorTokenFileName+")")
}

// newCLIClient builds a client from the flags added by addClientFlags.
func newCLIClient(cmd *cobra.Command) (*client.Client, error) {
	f := cmd.Flags()
	server, _ := f.GetString("server")
	token, _ := f.GetString("token")
	tokenFile, _ := f.GetString("token-file")
	server = firstNonEmpty(server, os.Getenv("DROVER_SERVER"), defaultServerURL)
	token = firstNonEmpty(token, os.Getenv("DROVER_TOKEN"))
	if token == "" {
		path := firstNonEmpty(tokenFile, os.Getenv("DROVER_TOKEN_FILE"), operatorTokenFileName)
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			token = strings.TrimSpace(string(b))
		case tokenFile != "" || !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("read token file: %w", err)
		}
	}
	if token == "" {
		return nil, errors.New("no API token: pass --token, set DROVER_TOKEN, or point --token-file at the server's operator.token")
	}
	return client.New(server, token, client.WithUserAgent("drover-cli/"+version))
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// ago renders the time since t, relative to now, briefly.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func shortID(s string) string {
	if len(s) > 8 {
		return s[len(s)-8:]
	}
	return s
}

func init() {
	var (
		states                   []string
		owner, pool, typ, worker string
		limit                    int
		asJSON                   bool
	)
	cmd := &cobra.Command{
		Use:   "tasks [ID]",
		Short: "List tasks, or show one task",
		Long: `Without an argument list tasks, newest first, filtered by --state, --owner,
--pool, --type and --worker. With a task id print that task in full (JSON).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newCLIClient(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(args) == 1 {
				id, err := parseUUIDArg("task id", args[0])
				if err != nil {
					return err
				}
				t, err := c.Task(cmd.Context(), id)
				if err != nil {
					return err
				}
				return printJSON(out, t)
			}
			if err := checkLimit("tasks", limit, 1000); err != nil {
				return err
			}
			f := wire.TaskFilter{Owner: owner, Pool: pool, Type: typ, WorkerID: worker, Limit: limit}
			for _, s := range states {
				f.States = append(f.States, wire.TaskState(s))
			}
			tasks, err := c.Tasks(cmd.Context(), f)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(out, tasks)
			}
			now := time.Now()
			tw := newTable(out)
			fmt.Fprintln(tw, "ID\tTYPE\tSTATE\tOWNER\tPOOL\tPRIO\tATTEMPT\tCREATED\tWORKER\tINFO")
			for _, t := range tasks {
				wid := "-"
				if t.WorkerID != nil {
					wid = shortID(t.WorkerID.String())
				}
				info := t.Error
				if t.State == wire.TaskState("running") && t.Progress != nil {
					info = fmt.Sprintf("%.0f%% %s", *t.Progress*100, t.ProgressMsg)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s ago\t%s\t%s\n", t.ID, t.Type, t.State, t.Owner, t.Pool,
					t.Priority, t.Attempt, ago(now, t.CreatedAt), wid, oneLine(info, 60))
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&states, "state", nil, "only tasks in these states (queued,running,succeeded,failed,cancelled)")
	f.StringVar(&owner, "owner", "", "only tasks of this owner")
	f.StringVar(&pool, "pool", "", "only tasks of this pool")
	f.StringVar(&typ, "type", "", "only tasks of this type")
	f.StringVar(&worker, "worker", "", "only tasks run by this worker id")
	f.IntVar(&limit, "limit", 50, "at most this many tasks (1..1000)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	addClientFlags(cmd)

	cancelCmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a queued or running task",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return taskAction(cmd, args[0], (*client.Client).Cancel)
		},
	}
	addClientFlags(cancelCmd)
	retryCmd := &cobra.Command{
		Use:   "retry ID",
		Short: "Put a failed or cancelled task back in the queue",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return taskAction(cmd, args[0], (*client.Client).Retry)
		},
	}
	addClientFlags(retryCmd)
	cmd.AddCommand(cancelCmd, retryCmd, newTaskOutputsCmd())
	rootCmd.AddCommand(cmd)
}

func taskAction(cmd *cobra.Command, arg string, do func(*client.Client, contextT, uuidT) (*wire.Task, error)) error {
	c, err := newCLIClient(cmd)
	if err != nil {
		return err
	}
	id, err := parseUUIDArg("task id", arg)
	if err != nil {
		return err
	}
	t, err := do(c, cmd.Context(), id)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "task %s is %s\n", t.ID, t.State)
	return nil
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
