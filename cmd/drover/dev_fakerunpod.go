package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/droverhq/drover/internal/provider/runpod/fakerunpod"
	"github.com/spf13/cobra"
)

// devCmd groups development helpers; it is hidden from help.
var devCmd = &cobra.Command{
	Use:    "dev",
	Short:  "Development helpers (not for production)",
	Hidden: true,
}

func init() {
	var (
		listen, logDir, binary string
		provision, start       time.Duration
		quota                  int
		window                 time.Duration
		agents                 bool
	)
	cmd := &cobra.Command{
		Use:   "fakerunpod",
		Short: "Run a fake RunPod REST v2 API on loopback",
		Long: `Serve a fake of RunPod's REST v2 API (pods and the GPU catalog) that follows
the published spec: bodies are validated, errors are RFC 9457 problem
documents, pods walk PROVISIONING → STARTING → RUNNING, cost is billed, and
the RateLimit headers are sent and enforced. The API key it accepts comes
from FAKERUNPOD_API_KEY. With --agents it starts a real "drover agent" for
every pod that reaches RUNNING, with the pod's env, so a "drover serve" whose
providers.runpod.base_url points here runs the whole RunPod path locally.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key := os.Getenv("FAKERUNPOD_API_KEY")
			if key == "" {
				return errors.New("fakerunpod: set FAKERUNPOD_API_KEY to the key the fake accepts (the same as DROVER_RUNPOD_API_KEY)")
			}
			if host, _, err := net.SplitHostPort(listen); err != nil || (host != "127.0.0.1" && host != "localhost" && host != "::1") {
				return fmt.Errorf("fakerunpod: --listen %q: want a loopback host:port such as 127.0.0.1:8090", listen)
			}
			if quota < 0 || window < time.Second {
				return fmt.Errorf("fakerunpod: --quota must be ≥ 0 and --window ≥ 1s (got %d, %s)", quota, window)
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
			opt := fakerunpod.Options{APIKey: key, ProvisionTime: provision, StartTime: start, Quota: quota, Window: window, Logger: logger}
			if agents {
				if binary == "" {
					exe, err := os.Executable()
					if err != nil {
						return fmt.Errorf("fakerunpod: find own executable: %w", err)
					}
					binary = exe
				}
				if err := os.MkdirAll(logDir, 0o700); err != nil {
					return fmt.Errorf("fakerunpod: --log-dir: %w", err)
				}
				opt.Agent = &fakerunpod.AgentOptions{Binary: binary, LogDir: logDir}
			}
			fake := fakerunpod.New(opt)
			defer fake.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go fake.Run(ctx, 200*time.Millisecond)
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("fakerunpod: listen: %w", err)
			}
			hs := &http.Server{Handler: fake.Handler(), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = hs.Shutdown(sctx)
			}()
			fmt.Fprintf(cmd.ErrOrStderr(), "fake RunPod on http://%s (set providers.runpod.base_url to it)%s\n", ln.Addr(),
				strings.Repeat(" with agents", btoi(agents)))
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("fakerunpod: serve: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8090", "loopback address to serve on")
	f.DurationVar(&provision, "provision-time", 2*time.Second, "time a pod stays PROVISIONING")
	f.DurationVar(&start, "start-time", 2*time.Second, "time a pod stays STARTING")
	f.IntVar(&quota, "quota", 60, "advertised and enforced requests per window; 0 = no limit")
	f.DurationVar(&window, "window", time.Minute, "rate-limit window")
	f.BoolVar(&agents, "agents", false, "start a real drover agent for every RUNNING pod")
	f.StringVar(&binary, "agent-binary", "", "drover binary for the agents (default: this one)")
	f.StringVar(&logDir, "log-dir", "fakerunpod-agents", "directory for the agents' logs")
	devCmd.AddCommand(cmd)
	rootCmd.AddCommand(devCmd)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
