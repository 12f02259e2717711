package config

// Default request rate limits per token (requests per second and burst).
const (
	DefaultAPIRate     = 500
	DefaultAPIBurst    = 1000
	DefaultWorkerRate  = 200
	DefaultWorkerBurst = 400
)

// LimitsConfig bounds the API's request rate per bearer token. Operator and
// owner tokens share one budget per token; worker routes have their own,
// so a runaway client cannot starve agents' heartbeats. 0 takes the
// default.
type LimitsConfig struct {
	APIRate     float64 `yaml:"api_rate"`
	APIBurst    int     `yaml:"api_burst"`
	WorkerRate  float64 `yaml:"worker_rate"`
	WorkerBurst int     `yaml:"worker_burst"`
}

// EffectiveLimits returns the limits with defaults filled in.
func (c *Config) EffectiveLimits() LimitsConfig {
	l := c.Limits
	if l.APIRate == 0 {
		l.APIRate = DefaultAPIRate
	}
	if l.APIBurst == 0 {
		l.APIBurst = DefaultAPIBurst
	}
	if l.WorkerRate == 0 {
		l.WorkerRate = DefaultWorkerRate
	}
	if l.WorkerBurst == 0 {
		l.WorkerBurst = DefaultWorkerBurst
	}
	return l
}

func (c *Config) validateLimits(ck *checker) {
	l := c.Limits
	if l.APIRate < 0 {
		ck.addf("limits.api_rate", "must be ≥ 0 requests per second (0 = %d; got %g)", DefaultAPIRate, l.APIRate)
	}
	if l.APIBurst < 0 {
		ck.addf("limits.api_burst", "must be ≥ 0 (0 = %d; got %d)", DefaultAPIBurst, l.APIBurst)
	}
	if l.WorkerRate < 0 {
		ck.addf("limits.worker_rate", "must be ≥ 0 requests per second (0 = %d; got %g)", DefaultWorkerRate, l.WorkerRate)
	}
	if l.WorkerBurst < 0 {
		ck.addf("limits.worker_burst", "must be ≥ 0 (0 = %d; got %d)", DefaultWorkerBurst, l.WorkerBurst)
	}
}
