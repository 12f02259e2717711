package config

import "time"

// SpendConfig holds the fleet-wide spend settings.
type SpendConfig struct {
	// MaxHourlySpend caps the sum of every live worker's price per hour
	// (USD) across all pools; spawns that would exceed it are refused with
	// a reason. 0 = no cap. Each pool has its own pools.X.max_hourly_spend.
	MaxHourlySpend float64 `yaml:"max_hourly_spend"`
	// SampleInterval is how often the leader records the time series
	// behind the dashboard's charts (queue depth, workers by state,
	// throughput, spend). Default 1m; samples are pruned by retention.
	SampleInterval Duration `yaml:"sample_interval"`
}

// DefaultSampleInterval is the default of spend.sample_interval.
const DefaultSampleInterval = time.Minute

func (c *Config) validateSpend(ck *checker) {
	if c.Spend.MaxHourlySpend < 0 {
		ck.addf("spend.max_hourly_spend", "must be ≥ 0; 0 means no cap (got %g)", c.Spend.MaxHourlySpend)
	}
	if c.Spend.SampleInterval.D() < 0 {
		ck.addf("spend.sample_interval", "must be ≥ 0; 0 means the default 1m (got %s)", c.Spend.SampleInterval.D())
	}
}
