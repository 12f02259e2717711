package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/droverhq/drover/internal/demo"
	"github.com/spf13/cobra"
)

func init() {
	var (
		exit, noKill, verbose, keep bool
		tasks                       int
		dir                         string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a self-contained demo: server, local GPU-less workers and a batch of real work",
		Long: `Start a whole Drover server in-process (SQLite in a temp dir, the API on a
free loopback port, one local pool of 0–4 agents), submit a batch of
Mandelbrot tiles, show live progress, SIGKILL one agent mid-run to show
recovery, and print a summary. Without --exit it keeps serving until Ctrl-C.
Without --dir the demo works in a new temporary directory, removed when it
ends unless --keep is given (then its path is printed).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if tasks < 1 || tasks > demo.MaxTasks {
				return fmt.Errorf("demo: --tasks %d: want 1..%d", tasks, demo.MaxTasks)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			level := slog.LevelError
			if verbose {
				level = slog.LevelInfo
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "drover-demo-")
				if err != nil {
					return fmt.Errorf("demo: create temp dir: %w", err)
				}
				dir = d
				// demo.Run has stopped its agents and server when it
				// returns: nothing writes to the directory any more.
				defer func() {
					if keep {
						fmt.Fprintf(cmd.OutOrStdout(), "kept the demo's directory (--keep): %s\n", d)
						return
					}
					if err := os.RemoveAll(d); err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "drover: demo: remove %s: %v\n", d, err)
						return
					}
					fmt.Fprintf(cmd.OutOrStdout(), "removed the demo's temporary directory %s (keep it with --keep)\n", d)
				}()
			}
			sum, err := demo.Run(ctx, demo.Options{
				Tasks: tasks, Exit: exit, Kill: !noKill, Dir: dir, Out: cmd.OutOrStdout(),
				Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
			})
			if err != nil {
				return err
			}
			if exit && sum.Failed > 0 {
				return fmt.Errorf("demo: %d tasks failed", sum.Failed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&exit, "exit", false, "exit when every task is done instead of serving until Ctrl-C")
	f.IntVar(&tasks, "tasks", 24, "number of tasks (tiles) to submit")
	f.BoolVar(&noKill, "no-kill", false, "do not SIGKILL an agent mid-run")
	f.StringVar(&dir, "dir", "", "working directory, kept (default: a new temp dir, removed at the end unless --keep)")
	f.BoolVar(&keep, "keep", false, "keep the temporary directory (database, logs, image) and print its path")
	f.BoolVar(&verbose, "verbose", false, "show the server's logs")
	rootCmd.AddCommand(cmd)

	rootCmd.AddCommand(&cobra.Command{
		Use:    "demo-handler",
		Short:  "The demo's task handler (run by agents; reads params on stdin)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := demo.RunHandler(os.Stdin, os.Stdout, os.Stderr); code != 0 {
				os.Exit(code)
			}
			return nil
		},
	})
}
