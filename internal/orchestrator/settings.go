package orchestrator

import (
	"time"

	"github.com/droverhq/drover/internal/config"
)

// Zero-valued settings take config's documented defaults (config.Default…),
// so a hand-built config (tests, the simulator) behaves like a loaded one.

// poolSettings are one pool's effective settings.
type poolSettings struct {
	name             string
	cfg              *config.PoolConfig
	min, max         int
	idleBuffer       int
	concurrency      int
	maxSpawnPerTick  int
	idleTimeout      time.Duration
	provisionTimeout time.Duration
	bootTimeout      time.Duration
	drainTimeout     time.Duration
	orphanGrace      time.Duration
}

func orDefault(d config.Duration, def time.Duration) time.Duration {
	if d.D() > 0 {
		return d.D()
	}
	return def
}

func settingsOf(name string, pc *config.PoolConfig) poolSettings {
	s := poolSettings{
		name:             name,
		cfg:              pc,
		min:              pc.Min,
		max:              pc.Max,
		idleBuffer:       pc.IdleBuffer,
		concurrency:      pc.Concurrency,
		maxSpawnPerTick:  pc.MaxSpawnPerTick,
		idleTimeout:      orDefault(pc.IdleTimeout, config.DefaultIdleTimeout),
		provisionTimeout: orDefault(pc.ProvisionTimeout, config.DefaultProvisionTimeout),
		bootTimeout:      orDefault(pc.BootTimeout, config.DefaultBootTimeout),
		drainTimeout:     orDefault(pc.DrainTimeout, config.DefaultDrainTimeout),
		orphanGrace:      orDefault(pc.OrphanGrace, config.DefaultOrphanGrace),
	}
	if s.concurrency <= 0 {
		s.concurrency = config.DefaultConcurrency
	}
	if s.maxSpawnPerTick <= 0 {
		s.maxSpawnPerTick = config.DefaultMaxSpawnPerTick
	}
	return s
}

func tickOf(cfg *config.Config) time.Duration { return orDefault(cfg.Tick, config.DefaultTick) }

func heartbeatTimeoutOf(cfg *config.Config) time.Duration {
	return orDefault(cfg.HeartbeatTimeout, config.DefaultHeartbeatTimeout)
}
