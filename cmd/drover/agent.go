package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/droverhq/drover/internal/agent"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/provider/local"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

func init() {
	var (
		server, workerID, execCmd, instanceID, logLevel, tokenFlag string
		caFile                                                     string
		concurrency                                                int
		killGrace, serverLost                                      time.Duration
		noGPU                                                      bool
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the worker agent: claim tasks from a Drover server and run the handler for each",
		Long: `Run the worker agent on a worker machine. It registers with the server
(reporting the GPUs nvidia-smi finds), heartbeats, claims tasks and runs
--exec once per task with "sh -c", params JSON on stdin. See docs/agent.md.

The server URL, worker id and token come from flags or from DROVER_SERVER,
DROVER_WORKER_ID and DROVER_TOKEN (providers set these). Pass the token in
the environment: a command-line flag shows in ps.

SIGTERM or SIGINT drains (running tasks finish, nothing new is claimed); a
second signal stops at once (handlers get SIGTERM, then SIGKILL).

Dead man's switch: when no call has reached the server for
--server-lost-timeout (default: the server's server_lost_timeout, 4 ×
heartbeat_timeout), the agent kills its handlers, reports nothing and exits
1, so that a rented machine whose server is gone for good stops billing.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Started by the local provider: wait until it has recorded us.
			if err := local.AwaitGate(); err != nil {
				return err
			}
			token := tokenFlag
			if token == "" {
				token = os.Getenv("DROVER_TOKEN")
			}
			if server == "" {
				server = os.Getenv("DROVER_SERVER")
			}
			if workerID == "" {
				workerID = os.Getenv("DROVER_WORKER_ID")
			}
			if execCmd == "" {
				execCmd = os.Getenv("DROVER_EXEC")
			}
			if instanceID == "" {
				instanceID = os.Getenv("DROVER_INSTANCE_ID")
			}
			if instanceID == "" {
				instanceID = os.Getenv("RUNPOD_POD_ID") // set by RunPod in every pod
			}
			switch {
			case server == "":
				return errors.New("agent: --server (or DROVER_SERVER) is required")
			case workerID == "":
				return errors.New("agent: --worker-id (or DROVER_WORKER_ID) is required")
			case token == "":
				return errors.New("agent: DROVER_TOKEN (or --token) is required")
			case execCmd == "":
				return errors.New("agent: --exec (or DROVER_EXEC) is required")
			case killGrace <= 0:
				return fmt.Errorf("agent: --kill-grace %s: must be positive", killGrace)
			case serverLost < 0:
				return fmt.Errorf("agent: --server-lost-timeout %s: must be 0 (the server's) or positive", serverLost)
			case concurrency < 0 || concurrency > 256:
				return fmt.Errorf("agent: --concurrency %d: want 0..256 (0 = the pool's)", concurrency)
			}
			id, err := uuid.Parse(workerID)
			if err != nil {
				return fmt.Errorf("agent: --worker-id %q: not a uuid", workerID)
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("agent: --log-level %q: want debug|info|warn|error", logLevel)
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			if caFile == "" {
				caFile = os.Getenv("DROVER_CA_FILE")
			}
			opts := []client.Option{client.WithUserAgent("drover-agent/" + version)}
			if caFile != "" {
				hc, err := client.CAFileHTTPClient(caFile)
				if err != nil {
					return fmt.Errorf("agent: --ca-file: %w", err)
				}
				opts = append(opts, client.WithHTTPClient(hc))
			}
			c, err := client.New(server, token, opts...)
			if err != nil {
				return fmt.Errorf("agent: %w", err)
			}
			var probe agent.GPUProbe = agent.NvidiaSMI{}
			if noGPU {
				probe = agent.NoGPUs{}
			}
			agent.Version = version
			a := agent.New(c, agent.Options{
				WorkerID:    id,
				InstanceID:  instanceID,
				Concurrency: concurrency,
				Runner:      &agent.Runner{Command: execCmd, KillGrace: killGrace},
				GPU:         probe,
				Logger:      logger,

				ServerLostTimeout: serverLost,
			})
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sigs)
			go func() {
				n := 0
				for {
					select {
					case s := <-sigs:
						n++
						if n == 1 {
							logger.Info("signal: draining (send again to stop now)", "signal", s.String())
							a.Drain()
						} else {
							logger.Info("signal: stopping now", "signal", s.String())
							a.Stop("second signal")
						}
					case <-ctx.Done():
						return
					}
				}
			}()
			if err := a.Run(ctx); err != nil {
				if errors.Is(err, agent.ErrServerLost) {
					return fmt.Errorf("agent: no answer from the server for server_lost_timeout; handlers killed, nothing reported: %w", err)
				}
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "server URL (env DROVER_SERVER)")
	f.StringVar(&workerID, "worker-id", "", "worker id (env DROVER_WORKER_ID)")
	f.StringVar(&tokenFlag, "token", "", "worker token; prefer env DROVER_TOKEN (flags show in ps)")
	f.StringVar(&execCmd, "exec", "", `handler command, run with "sh -c" once per task (env DROVER_EXEC)`)
	f.StringVar(&instanceID, "instance-id", "", "provider instance id, if known (env DROVER_INSTANCE_ID)")
	f.IntVar(&concurrency, "concurrency", 0, "tasks run at once (0 = the pool's concurrency)")
	f.DurationVar(&killGrace, "kill-grace", agent.DefaultKillGrace, "time between SIGTERM and SIGKILL when a handler is cancelled or times out")
	f.DurationVar(&serverLost, "server-lost-timeout", 0, "dead man's switch: with no answer from the server for this long, kill the handlers and exit 1 (0 = the server's server_lost_timeout, 4 × heartbeat_timeout by default)")
	f.BoolVar(&noGPU, "no-gpu", false, "do not probe GPUs (report none)")
	f.StringVar(&logLevel, "log-level", "info", "debug|info|warn|error")
	f.StringVar(&caFile, "ca-file", "", "PEM CA certificate(s) to trust for an https server with a private CA (env DROVER_CA_FILE)")
	rootCmd.AddCommand(cmd)
}
