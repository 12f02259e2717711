package orchestrator

import (
	"time"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/config"
)

// Defaults the orchestrator applies to zero-valued settings, so that a
// hand-built config (tests, the simulator) behaves like a loaded one. They
// match DESIGN §9.
const (
	DefaultTick             = 2 * time.Second
	DefaultHeartbeatTimeout = 25 * time.Second
	DefaultConcurrency      = 1
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultProvisionTimeout = 10 * time.Minute
	DefaultBootTimeout      = 15 * time.Minute
	DefaultDrainTimeout     = 10 * time.Minute
	// DefaultOrphanGrace is how long an instance tagged with a worker id
	// that has no live row survives before it is deleted. Two minutes is
	// many ticks (so a list that races a spawn in another replica never
	// kills a fresh machine) and short enough that a leak costs cents.
	DefaultOrphanGrace     = 2 * time.Minute
	DefaultMaxSpawnPerTick = 4
)

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
		idleTimeout:      orDefault(pc.IdleTimeout, DefaultIdleTimeout),
		provisionTimeout: orDefault(pc.ProvisionTimeout, DefaultProvisionTimeout),
		bootTimeout:      orDefault(pc.BootTimeout, DefaultBootTimeout),
		drainTimeout:     orDefault(pc.DrainTimeout, DefaultDrainTimeout),
		orphanGrace:      orDefault(pc.OrphanGrace, DefaultOrphanGrace),
	}
	if s.concurrency <= 0 {
		s.concurrency = DefaultConcurrency
	}
	if s.maxSpawnPerTick <= 0 {
		s.maxSpawnPerTick = DefaultMaxSpawnPerTick
	}
	return s
}

// BreakerConfig converts the config's breaker section to breaker.Config
// with defaults filled.
func BreakerConfig(cfg *config.Config) breaker.Config {
	b := cfg.Breaker
	return breaker.Config{
		Window:         b.Window.D(),
		Threshold:      b.Threshold,
		MinSamples:     b.MinSamples,
		MaxConsecutive: b.MaxConsecutive,
		Cooldown:       b.Cooldown.D(),
		MaxCooldown:    b.MaxCooldown.D(),
		StartGrace:     b.StartGrace.D(),
	}.WithDefaults()
}

func tickOf(cfg *config.Config) time.Duration { return orDefault(cfg.Tick, DefaultTick) }

func heartbeatTimeoutOf(cfg *config.Config) time.Duration {
	return orDefault(cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
}
