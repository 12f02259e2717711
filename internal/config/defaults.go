package config

import (
	"time"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/core"
)

// Defaults (DESIGN §9). docs/configuration.md lists every one of them.
const (
	DefaultListen            = "127.0.0.1:8080"
	DefaultDatabase          = "sqlite://drover.db"
	DefaultTick              = 2 * time.Second
	DefaultHeartbeatInterval = 5 * time.Second
	// DefaultHeartbeatTimeout is five missed beats: the worker fails and
	// its leases are requeued.
	DefaultHeartbeatTimeout = 25 * time.Second
	DefaultRetention        = 7 * 24 * time.Hour
	DefaultLogFormat        = "text"
	DefaultLogLevel         = "info"

	DefaultBackoffBase = 10 * time.Second
	DefaultBackoffMax  = 10 * time.Minute

	DefaultPoolProvider     = "runpod"
	DefaultPoolMax          = 10
	DefaultConcurrency      = 1
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultProvisionTimeout = 10 * time.Minute
	// DefaultBootTimeout is create → first heartbeat. It is long on
	// purpose: the seed incident killed pods that needed 5–6 minutes to
	// start at 300 s and counted them as failures.
	DefaultBootTimeout     = 15 * time.Minute
	DefaultDrainTimeout    = 10 * time.Minute
	DefaultOrphanGrace     = 5 * time.Minute
	DefaultMaxSpawnPerTick = 4

	// DevPoolExec is the handler of the zero-setup "default" pool: it
	// echoes params back as the result.
	DevPoolExec = "cat"
	// DevPoolMax is the max of the zero-setup "default" pool.
	DevPoolMax = 4

	DefaultLeaderTTL      = 15 * time.Second
	DefaultLeaderInterval = 5 * time.Second
)

// Default returns the configuration used without a file: SQLite in
// ./drover.db, the API on 127.0.0.1:8080, and one pool "default" on the
// local provider (agent processes on this host, 0 to 4 of them, no GPU
// required) so that `drover serve` works with zero setup on a laptop.
func Default() *Config {
	c := &Config{
		Listen:            DefaultListen,
		Database:          DefaultDatabase,
		Tick:              Duration(DefaultTick),
		HeartbeatInterval: Duration(DefaultHeartbeatInterval),
		HeartbeatTimeout:  Duration(DefaultHeartbeatTimeout),
		Retention:         Duration(DefaultRetention),
		LogFormat:         DefaultLogFormat,
		LogLevel:          DefaultLogLevel,
		Tasks: TasksConfig{
			MaxAttempts: core.DefaultMaxAttempts,
			MaxLost:     core.DefaultMaxLost,
			QueueTTL:    Duration(core.DefaultQueueTTL),
			OwnerLimit:  core.DefaultOwnerLimit,
			Timeout:     Duration(core.DefaultTaskTimeout),
			BackoffBase: Duration(DefaultBackoffBase),
			BackoffMax:  Duration(DefaultBackoffMax),
		},
		Breaker: BreakerConfig{
			Window:         Duration(breaker.DefaultWindow),
			Threshold:      breaker.DefaultThreshold,
			MinSamples:     breaker.DefaultMinSamples,
			MaxConsecutive: breaker.DefaultMaxConsecutive,
			Cooldown:       Duration(breaker.DefaultCooldown),
			MaxCooldown:    Duration(breaker.DefaultMaxCooldown),
			StartGrace:     Duration(breaker.DefaultStartGrace),
		},
		Leader: LeaderConfig{
			TTL:      Duration(DefaultLeaderTTL),
			Interval: Duration(DefaultLeaderInterval),
		},
	}
	c.Pools = map[string]*PoolConfig{core.DefaultPool: DevPool()}
	return c
}

// DevPool returns the zero-setup pool: local provider, min 0, max 4, no GPU
// required, every other field at its default.
func DevPool() *PoolConfig {
	// The zero-setup handler echoes each task's params back as its result
	// (the agent writes params as one JSON line on stdin, and the last
	// stdout line that is a JSON object is the result): enough to see tasks
	// flow before a real handler is configured with `exec`.
	p := &PoolConfig{Provider: "local", Max: DevPoolMax, RequiresGPU: new(false), Exec: DevPoolExec}
	p.fillDefaults(nil)
	return p
}

// fillDefaults sets every unset field of p to its default. set lists the
// YAML keys the file gave explicitly (nil: none), so that an explicit 0 is
// kept and reported by Validate instead of silently replaced.
func (p *PoolConfig) fillDefaults(set map[string]bool) {
	unset := func(key string) bool { return !set[key] }
	if unset("provider") && p.Provider == "" {
		p.Provider = DefaultPoolProvider
	}
	if unset("max") && p.Max == 0 {
		p.Max = DefaultPoolMax
	}
	if unset("concurrency") && p.Concurrency == 0 {
		p.Concurrency = DefaultConcurrency
	}
	durs := []struct {
		key string
		d   *Duration
		def time.Duration
	}{
		{"idle_timeout", &p.IdleTimeout, DefaultIdleTimeout},
		{"provision_timeout", &p.ProvisionTimeout, DefaultProvisionTimeout},
		{"boot_timeout", &p.BootTimeout, DefaultBootTimeout},
		{"drain_timeout", &p.DrainTimeout, DefaultDrainTimeout},
		{"orphan_grace", &p.OrphanGrace, DefaultOrphanGrace},
	}
	for _, d := range durs {
		if unset(d.key) && *d.d == 0 {
			*d.d = Duration(d.def)
		}
	}
	if unset("max_spawn_per_tick") && p.MaxSpawnPerTick == 0 {
		p.MaxSpawnPerTick = DefaultMaxSpawnPerTick
	}
	if p.RequiresGPU == nil {
		// Rented machines exist for their GPUs; local and sim pools run
		// anywhere unless told otherwise.
		p.RequiresGPU = new(p.Provider == "runpod")
	}
}

// GPURequired reports whether workers of p must have a GPU.
func (p *PoolConfig) GPURequired() bool { return p.RequiresGPU != nil && *p.RequiresGPU }

// BreakerConfig returns the breaker parameters for package breaker.
func (c *Config) BreakerConfig() breaker.Config {
	b := c.Breaker
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

// ServerLostFactor times heartbeat_timeout is the default
// server_lost_timeout: the agents' dead man's switch.
const ServerLostFactor = 4

// EffectiveServerLostTimeout is server_lost_timeout, or ServerLostFactor ×
// heartbeat_timeout when it is 0.
func (c *Config) EffectiveServerLostTimeout() time.Duration {
	if c.ServerLostTimeout > 0 {
		return c.ServerLostTimeout.D()
	}
	return ServerLostFactor * c.HeartbeatTimeout.D()
}
