package config

import (
	"fmt"
	"time"
)

// StallTimeouts returns the stall_timeout of every task type that sets one.
func (c *Config) StallTimeouts() map[string]time.Duration {
	m := map[string]time.Duration{}
	for name, t := range c.Tasks.Types {
		if t != nil && t.StallTimeout > 0 {
			m[name] = t.StallTimeout.D()
		}
	}
	return m
}

// validateStall checks every tasks.types.T.stall_timeout: ≥ 0, and when set
// at least heartbeat_interval (progress and log lines reach the server at
// most that often, so a shorter timeout would fail healthy attempts).
func (c *Config) validateStall(ck *checker) {
	for _, name := range sortedKeys(c.Tasks.Types) {
		t := c.Tasks.Types[name]
		if t == nil || t.StallTimeout == 0 {
			continue
		}
		field := fmt.Sprintf("tasks.types.%s.stall_timeout", name)
		switch {
		case t.StallTimeout < 0:
			ck.addf(field, "must be ≥ 0 (0 = off; got %s)", t.StallTimeout)
		case t.StallTimeout < c.HeartbeatInterval:
			ck.addf(field, "must be at least heartbeat_interval (%s), how often agents report progress and logs (got %s)", c.HeartbeatInterval, t.StallTimeout)
		}
	}
}
