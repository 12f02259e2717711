package server

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider/runpod"
)

// NewRunPodProvider builds the RunPod provider for cfg: one client with
// the API key (never logged), the cluster name of this deployment, and one
// entry per runpod pool. When RunPod's catalog is reachable (within 10 s),
// every candidate GPU type must be in it; an unreachable catalog only
// logs a warning.
func NewRunPodProvider(ctx context.Context, cfg *config.Config, clock core.Clock, log *slog.Logger) (*runpod.Provider, error) {
	if clock == nil {
		clock = core.SystemClock{}
	}
	c, err := runpod.NewClient(runpod.ClientOptions{
		BaseURL: cfg.Providers.RunPod.BaseURL, APIKey: cfg.Providers.RunPod.APIKey,
		Now: clock.Now, UserAgent: "drover",
	})
	if err != nil {
		return nil, fmt.Errorf("build runpod provider: %w", err)
	}
	pools := map[string]runpod.Pool{}
	for name, pc := range cfg.Pools {
		if pc == nil || pc.Provider != runpod.Name {
			continue
		}
		rp := pc.RunPod
		if rp == nil {
			rp = &config.RunPodPoolConfig{}
		}
		pools[name] = runpod.Pool{
			Image: pc.Image, Template: rp.Template, GPUCount: rp.GPUCount, Cloud: rp.Cloud, Disk: rp.DiskGB(),
			NetworkVolume: rp.NetworkVolume, MountPath: rp.MountPath, Registry: rp.Registry, Ports: rp.Ports,
			MinCudaVersion: rp.MinCudaVersion, Exec: pc.Exec,
		}
	}
	p, err := runpod.New(runpod.Options{Client: c, Cluster: cfg.ClusterName(), Pools: pools, Logger: log.With("component", "provider")})
	if err != nil {
		return nil, fmt.Errorf("build runpod provider: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	gpus, err := runpod.NewCatalog(c, 0).GPUs(cctx)
	if err != nil {
		log.Warn("RunPod catalog not reachable at start-up: GPU type ids checked against the built-in list only", "err", err)
		return p, nil
	}
	var problems []string
	for name, pc := range cfg.Pools {
		if pc == nil || pc.Provider != runpod.Name {
			continue
		}
		for i, cand := range pc.Candidates {
			if _, ok := gpus[cand.GPU]; !ok {
				problems = append(problems, fmt.Sprintf("pools.%s.candidates[%d].gpu: RunPod's catalog has no GPU type %q", name, i, cand.GPU))
			}
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("runpod: %s", strings.Join(problems, "\n  "))
	}
	return p, nil
}
