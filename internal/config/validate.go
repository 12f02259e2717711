package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// Providers known to the configuration.
var knownProviders = []string{"runpod", "local", "sim"}

// Limits checked by Validate.
const (
	MaxConcurrency     = 256
	MaxPoolSize        = 10000
	MaxSpawnPerTickCap = 1000
)

var poolNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// ValidationError lists every problem of a configuration, one line each,
// each naming the field and the limit.
type ValidationError struct {
	Problems []string
}

// Error implements error: the problems, one per line.
func (e *ValidationError) Error() string { return strings.Join(e.Problems, "\n") }

type checker struct{ problems []string }

func (c *checker) addf(field, format string, args ...any) {
	c.problems = append(c.problems, field+": "+fmt.Sprintf(format, args...))
}

func (c *checker) positive(field string, d Duration) {
	if d <= 0 {
		c.addf(field, "must be > 0 (got %s)", d)
	}
}

func (c *checker) between(field string, v, lo, hi int) {
	if v < lo || v > hi {
		c.addf(field, "must be between %d and %d (got %d)", lo, hi, v)
	}
}

func (c *checker) oneOf(field, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		c.addf(field, "must be one of %s (got %q)", strings.Join(allowed, ", "), v)
	}
}

// Validate checks c and returns a *ValidationError listing every problem
// (not just the first), or nil.
func (c *Config) Validate() error {
	var ck checker

	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		ck.addf("listen", "must be host:port, e.g. 127.0.0.1:8080 (got %q)", c.Listen)
	}
	switch {
	case strings.HasPrefix(c.Database, "sqlite://"):
		if strings.TrimPrefix(c.Database, "sqlite://") == "" {
			ck.addf("database", "sqlite:// needs a file path, e.g. sqlite://drover.db")
		}
	case strings.HasPrefix(c.Database, "postgres://"), strings.HasPrefix(c.Database, "postgresql://"):
		if _, err := url.Parse(c.Database); err != nil {
			ck.addf("database", "not a valid postgres:// URL")
		}
	default:
		ck.addf("database", "must start with sqlite:// or postgres:// (got %q)", RedactURL(c.Database))
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ck.addf("public_url", "must be an http:// or https:// URL with a host (got %q)", c.PublicURL)
		}
	}
	ck.positive("tick", c.Tick)
	ck.positive("heartbeat_interval", c.HeartbeatInterval)
	ck.positive("heartbeat_timeout", c.HeartbeatTimeout)
	if c.HeartbeatInterval > 0 && c.HeartbeatTimeout > 0 && c.HeartbeatTimeout <= c.HeartbeatInterval {
		ck.addf("heartbeat_timeout", "must be greater than heartbeat_interval %s (got %s); 5 intervals is usual",
			c.HeartbeatInterval, c.HeartbeatTimeout)
	}
	if c.ServerLostTimeout < 0 || (c.ServerLostTimeout > 0 && c.ServerLostTimeout <= c.HeartbeatTimeout) {
		ck.addf("server_lost_timeout", "must be 0 (= %d × heartbeat_timeout) or greater than heartbeat_timeout %s (got %s)",
			ServerLostFactor, c.HeartbeatTimeout, c.ServerLostTimeout)
	}
	ck.positive("retention", c.Retention)
	ck.oneOf("log_format", c.LogFormat, "text", "json")
	ck.oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error")

	c.validateTasks(&ck)
	c.validatePools(&ck)
	c.validateBreaker(&ck)
	c.validateRunPod(&ck)
	c.validateCallTimeouts(&ck)
	c.validateTLS(&ck)
	c.validateSpend(&ck)
	c.validateOutputs(&ck)
	c.validateWebhooks(&ck)
	c.validateStall(&ck)
	c.validateLimits(&ck)

	if c.Leader.TTL <= 0 || c.Leader.Interval <= 0 {
		ck.positive("leader.ttl", c.Leader.TTL)
		ck.positive("leader.interval", c.Leader.Interval)
	} else if c.Leader.Interval >= c.Leader.TTL {
		ck.addf("leader.interval", "must be less than leader.ttl %s (got %s)", c.Leader.TTL, c.Leader.Interval)
	}
	if b := c.Providers.RunPod.BaseURL; b != "" {
		if u, err := url.Parse(b); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ck.addf("providers.runpod.base_url", "must be an http:// or https:// URL (got %q)", b)
		}
	}
	if c.usesProvider("runpod") && c.Providers.RunPod.APIKey == "" {
		ck.addf("providers.runpod", "a pool uses runpod but there is no API key: set %s or providers.runpod.api_key_file", EnvRunPodAPIKey)
	}
	for i, g := range c.Providers.Local.GPUs {
		if g < 0 {
			ck.addf(fmt.Sprintf("providers.local.gpus[%d]", i), "must be ≥ 0 (got %d)", g)
		}
	}

	if len(ck.problems) > 0 {
		return &ValidationError{Problems: ck.problems}
	}
	return nil
}

func (c *Config) usesProvider(name string) bool {
	for _, p := range c.Pools {
		if p != nil && p.Provider == name {
			return true
		}
	}
	return false
}

func (c *Config) validateTasks(ck *checker) {
	t := c.Tasks
	ck.between("tasks.max_attempts", t.MaxAttempts, 1, core.MaxMaxAttempts)
	ck.between("tasks.max_lost", t.MaxLost, 1, core.MaxMaxLost)
	ck.positive("tasks.queue_ttl", t.QueueTTL)
	if t.OwnerLimit < 0 {
		ck.addf("tasks.owner_limit", "must be ≥ 0; 0 means unlimited (got %d)", t.OwnerLimit)
	}
	if t.MaxQueuedPerOwner < 0 || t.MaxQueuedPerOwner > MaxQueuedPerOwner {
		ck.addf("tasks.max_queued_per_owner", "must be between 0 (no cap) and %d (got %d)", MaxQueuedPerOwner, t.MaxQueuedPerOwner)
	}
	timeout := func(field string, d Duration) {
		if d < Duration(time.Second) || d > Duration(core.MaxTaskTimeout) {
			ck.addf(field, "must be between 1s and %s (got %s)", Duration(core.MaxTaskTimeout), d)
		}
	}
	timeout("tasks.timeout", t.Timeout)
	for _, typ := range sortedKeys(t.TypeTimeouts) {
		timeout("tasks.type_timeouts."+typ, t.TypeTimeouts[typ])
	}
	for _, typ := range sortedKeys(t.TypePools) {
		if _, ok := c.Pools[t.TypePools[typ]]; !ok {
			ck.addf("tasks.type_pools."+typ, "pool %q is not defined under pools", t.TypePools[typ])
		}
	}
	ck.positive("tasks.backoff_base", t.BackoffBase)
	if t.BackoffBase > 0 && t.BackoffMax < t.BackoffBase {
		ck.addf("tasks.backoff_max", "must be ≥ tasks.backoff_base %s (got %s)", t.BackoffBase, t.BackoffMax)
	}
}

func (c *Config) validatePools(ck *checker) {
	if len(c.Pools) == 0 {
		ck.addf("pools", "at least one pool is required")
		return
	}
	for _, name := range sortedKeys(c.Pools) {
		p := c.Pools[name]
		f := "pools." + name
		if !poolNameRE.MatchString(name) {
			ck.addf(f, "pool name must match [a-z0-9_-]{1,64}")
		}
		if p == nil {
			ck.addf(f, "is empty")
			continue
		}
		if !slices.Contains(knownProviders, p.Provider) {
			ck.addf(f+".provider", "unknown provider %q (known: %s)", p.Provider, strings.Join(knownProviders, ", "))
		}
		if p.Min < 0 {
			ck.addf(f+".min", "must be ≥ 0 (got %d)", p.Min)
		}
		if p.Max < 1 || p.Max > MaxPoolSize {
			ck.addf(f+".max", "must be between 1 and %d (got %d)", MaxPoolSize, p.Max)
		}
		if p.Min > p.Max {
			ck.addf(f+".min", "must be ≤ max %d (got %d)", p.Max, p.Min)
		}
		if p.IdleBuffer < 0 || (p.Max >= 1 && p.IdleBuffer > p.Max) {
			ck.addf(f+".idle_buffer", "must be between 0 and max %d (got %d)", p.Max, p.IdleBuffer)
		}
		ck.between(f+".concurrency", p.Concurrency, 1, MaxConcurrency)
		ck.positive(f+".idle_timeout", p.IdleTimeout)
		ck.positive(f+".provision_timeout", p.ProvisionTimeout)
		ck.positive(f+".boot_timeout", p.BootTimeout)
		ck.positive(f+".drain_timeout", p.DrainTimeout)
		ck.positive(f+".orphan_grace", p.OrphanGrace)
		if p.BootTimeout > 0 && c.HeartbeatTimeout > 0 && p.BootTimeout <= c.HeartbeatTimeout {
			ck.addf(f+".boot_timeout", "must be greater than heartbeat_timeout %s (got %s)", c.HeartbeatTimeout, p.BootTimeout)
		}
		ck.between(f+".max_spawn_per_tick", p.MaxSpawnPerTick, 1, MaxSpawnPerTickCap)
		if p.MaxHourlySpend < 0 {
			ck.addf(f+".max_hourly_spend", "must be ≥ 0; 0 means no cap (got %g)", p.MaxHourlySpend)
		}
		needsCandidates := p.Provider == "runpod" || p.Provider == "sim"
		if needsCandidates && len(p.Candidates) == 0 {
			ck.addf(f+".candidates", "a %s pool needs at least one candidate {gpu, regions}", p.Provider)
		}
		if p.Provider == "local" && strings.TrimSpace(p.Exec) == "" {
			ck.addf(f+".exec", "a local pool needs the handler command its agents run (e.g. exec: \"python3 handler.py\")")
		}
		seen := map[string]bool{}
		for i, cand := range p.Candidates {
			cf := fmt.Sprintf("%s.candidates[%d]", f, i)
			if strings.TrimSpace(cand.GPU) == "" {
				ck.addf(cf+".gpu", "is required")
			}
			if strings.Contains(cand.GPU, "/") {
				ck.addf(cf+".gpu", "must not contain '/' (it is part of the breaker key pool/gpu/region)")
			}
			for j, r := range cand.Regions {
				if strings.TrimSpace(r) == "" || strings.Contains(r, "/") {
					ck.addf(fmt.Sprintf("%s.regions[%d]", cf, j), "must be a non-empty region without '/' (got %q)", r)
				}
			}
		}
		for _, pl := range p.Placements() {
			k := pl.Key(name)
			if seen[k] {
				ck.addf(f+".candidates", "placement gpu=%q region=%q is listed twice", pl.GPU, pl.Region)
			}
			seen[k] = true
		}
		for _, k := range sortedKeys(p.Env) {
			if !envNameRE.MatchString(k) {
				ck.addf(f+".env", "%q is not a valid environment variable name", k)
			}
			if strings.HasPrefix(k, "DROVER_") {
				ck.addf(f+".env."+k, "DROVER_ variables are set by Drover for each worker")
			}
		}
	}
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c *Config) validateBreaker(ck *checker) {
	b := c.Breaker
	ck.positive("breaker.window", b.Window)
	if b.Threshold <= 0 || b.Threshold > 1 {
		ck.addf("breaker.threshold", "must be in (0, 1], a failure rate such as 0.8 (got %g)", b.Threshold)
	}
	if b.MinSamples < 1 {
		ck.addf("breaker.min_samples", "must be ≥ 1 (got %d)", b.MinSamples)
	}
	if b.MaxConsecutive < 1 {
		ck.addf("breaker.max_consecutive", "must be ≥ 1 (got %d)", b.MaxConsecutive)
	}
	ck.positive("breaker.cooldown", b.Cooldown)
	if b.Cooldown > 0 && b.MaxCooldown < b.Cooldown {
		ck.addf("breaker.max_cooldown", "must be ≥ breaker.cooldown %s (got %s)", b.Cooldown, b.MaxCooldown)
	}
	ck.positive("breaker.start_grace", b.StartGrace)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
