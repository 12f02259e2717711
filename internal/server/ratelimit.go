package server

import (
	"github.com/droverhq/drover/internal/api"
	"github.com/droverhq/drover/internal/config"
)

// apiRateLimits maps drover.yaml's limits onto the API's.
func apiRateLimits(cfg *config.Config) api.RateLimits {
	l := cfg.EffectiveLimits()
	return api.RateLimits{APIRate: l.APIRate, APIBurst: l.APIBurst, WorkerRate: l.WorkerRate, WorkerBurst: l.WorkerBurst}
}
