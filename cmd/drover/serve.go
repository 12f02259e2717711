package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/server"
	"github.com/droverhq/drover/internal/store/dbopen"
	"github.com/spf13/cobra"
)

// operatorTokenFileName is the file the operator token is generated into
// when neither DROVER_OPERATOR_TOKEN nor auth.operator_token_file gives one.
const operatorTokenFileName = "operator.token"

func init() {
	var path string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Drover server: API, control loop, metrics",
		Long: `Load the configuration (--config FILE, else $DROVER_CONFIG, else the
built-in defaults), open and migrate the database, and serve the API, the
worker protocol and /metrics on the listen address while running the control
loop. SIGINT or SIGTERM shuts down gracefully: the loop stops ticking,
waiting claims are released, in-flight requests get 10 s to finish, and task
leases stay valid so agents carry on through a restart.

The operator token comes from DROVER_OPERATOR_TOKEN, else from
auth.operator_token_file, else a random token is generated into
operator.token (mode 0600) next to the SQLite database; its path is
printed, the token never is. On PostgreSQL, where several replicas share
the database, no token is generated: every replica must be given the same
one (DROVER_OPERATOR_TOKEN or auth.operator_token_file).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				path = os.Getenv("DROVER_CONFIG")
			}
			cfg, err := config.Load(path, os.Getenv)
			if err != nil {
				if ve, ok := errors.AsType[*config.ValidationError](err); ok {
					return fmt.Errorf("config has %d problem(s):\n  %s", len(ve.Problems), strings.Join(ve.Problems, "\n  "))
				}
				return err
			}
			logger := newServeLogger(cfg)
			// A generated token is written only once the server could
			// start: a failed start (unreachable database) leaves no file.
			var newTokenPath, tokenPath string
			if cfg.Auth.OperatorToken == "" {
				tokPath := cfg.Auth.OperatorTokenFile
				if tokPath == "" {
					tokPath = defaultTokenPath(cfg.Database)
				}
				tok, err := server.ReadToken(tokPath)
				if err != nil {
					return err
				}
				if tok == "" {
					if err := server.CheckTokenGeneration(cfg.Database, tokPath); err != nil {
						return err
					}
					if tok, err = server.RandomToken(); err != nil {
						return err
					}
					newTokenPath = tokPath
				}
				cfg.Auth.OperatorToken = tok
				tokenPath = tokPath
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			providers := map[string]provider.Provider{}
			for _, pc := range cfg.Pools {
				if pc != nil && pc.Provider == "sim" {
					providers["sim"] = sim.New(core.SystemClock{}, sim.Options{Cluster: cfg.ClusterName()})
				}
			}
			srv, err := server.New(ctx, cfg, server.Options{Providers: providers, Logger: logger})
			if err != nil {
				return err
			}
			for _, w := range cfg.Warnings() {
				logger.Warn("config: " + w)
			}
			go reloadTLSOnHangup(ctx, srv, logger)
			if newTokenPath != "" {
				if err := server.WriteToken(newTokenPath, cfg.Auth.OperatorToken); err != nil {
					return err
				}
			}
			if tokenPath != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "operator token file: %s\n", tokenPath)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "drover serving on %s (database %s)\n", srv.URL(), dbopen.Redact(cfg.Database))
			err = srv.Run(ctx)
			fmt.Fprintln(cmd.ErrOrStderr(), shutdownMessage(context.WithoutCancel(ctx), cfg, srv, err))
			return err
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "path to drover.yaml (default: $DROVER_CONFIG, else built-in defaults)")
	rootCmd.AddCommand(cmd)
}

// defaultTokenPath is operator.token next to a SQLite database, else in the
// working directory.
func defaultTokenPath(dbURL string) string {
	if backend, target, err := dbopen.Parse(dbURL); err == nil && backend == "sqlite" {
		return filepath.Join(filepath.Dir(target), operatorTokenFileName)
	}
	return operatorTokenFileName
}

func newServeLogger(cfg *config.Config) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
