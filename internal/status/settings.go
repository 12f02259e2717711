package status

import (
	"time"

	"github.com/droverhq/drover/internal/config"
)

// Zero-valued settings take config's documented defaults, as the control
// loop does, so a hand-built config explains the same fleet.

func orDefault(d config.Duration, def time.Duration) time.Duration {
	if d.D() > 0 {
		return d.D()
	}
	return def
}

func bootTimeoutOf(cfg *config.Config, pool string) time.Duration {
	if pc := cfg.Pools[pool]; pc != nil {
		return orDefault(pc.BootTimeout, config.DefaultBootTimeout)
	}
	return config.DefaultBootTimeout
}

func provisionTimeoutOf(cfg *config.Config, pool string) time.Duration {
	if pc := cfg.Pools[pool]; pc != nil {
		return orDefault(pc.ProvisionTimeout, config.DefaultProvisionTimeout)
	}
	return config.DefaultProvisionTimeout
}

func idleTimeoutOf(cfg *config.Config, pool string) time.Duration {
	if pc := cfg.Pools[pool]; pc != nil {
		return orDefault(pc.IdleTimeout, config.DefaultIdleTimeout)
	}
	return config.DefaultIdleTimeout
}

func heartbeatIntervalOf(cfg *config.Config) time.Duration {
	return orDefault(cfg.HeartbeatInterval, config.DefaultHeartbeatInterval)
}

// globalSpendCap is the fleet-wide max_hourly_spend (0 = none).
func globalSpendCap(cfg *config.Config) float64 { return cfg.Spend.MaxHourlySpend }
