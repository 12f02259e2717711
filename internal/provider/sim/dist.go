package sim

import (
	"math/rand/v2"
	"time"
)

// Uniform returns a distribution for Script.ProvisionDist/BootDist drawing
// uniformly from [lo, hi].
func Uniform(lo, hi time.Duration) func(*rand.Rand) time.Duration {
	return func(r *rand.Rand) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
	}
}

// Normal returns a distribution with the given mean and standard
// deviation, never below zero.
func Normal(mean, stddev time.Duration) func(*rand.Rand) time.Duration {
	return func(r *rand.Rand) time.Duration {
		return max(0, mean+time.Duration(r.NormFloat64()*float64(stddev)))
	}
}
