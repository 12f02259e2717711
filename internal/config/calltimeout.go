package config

import "time"

// DefaultCallTimeout bounds a provider call when providers.*.call_timeout
// is not set (and the tick is long enough: see Config.CallTimeout).
const DefaultCallTimeout = 30 * time.Second

// maxCallTimeoutTicks is how many ticks one provider call may take at most.
const maxCallTimeoutTicks = 10

// CallTimeout returns the deadline of every call the control loop makes to
// provider name: providers.<name>.call_timeout, else DefaultCallTimeout
// capped at tick × 10. A provider that does not answer in time counts as a
// transient error and the tick goes on.
func (c *Config) CallTimeout(name string) time.Duration {
	var set *Duration
	switch name {
	case "runpod":
		set = c.Providers.RunPod.CallTimeout
	case "local":
		set = c.Providers.Local.CallTimeout
	}
	if set != nil && *set > 0 {
		return set.D()
	}
	tick := c.Tick.D()
	if tick <= 0 {
		tick = DefaultTick
	}
	return min(DefaultCallTimeout, tick*maxCallTimeoutTicks)
}

// validateCallTimeouts checks providers.*.call_timeout: positive and at
// most tick × 10.
func (c *Config) validateCallTimeouts(ck *checker) {
	for _, p := range []struct {
		name string
		v    *Duration
	}{{"runpod", c.Providers.RunPod.CallTimeout}, {"local", c.Providers.Local.CallTimeout}} {
		name, v := p.name, p.v
		if v == nil {
			continue
		}
		field := "providers." + name + ".call_timeout"
		switch limit := c.Tick.D() * maxCallTimeoutTicks; {
		case *v <= 0:
			ck.addf(field, "must be positive, got %s", v.D())
		case c.Tick > 0 && v.D() > limit:
			ck.addf(field, "must be at most tick × %d = %s, got %s", maxCallTimeoutTicks, limit, v.D())
		}
	}
}
