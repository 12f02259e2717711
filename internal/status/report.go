package status

import (
	"time"
)

// Verdicts of Report.Verdict.
const (
	VerdictHealthy    = "HEALTHY"
	VerdictDegraded   = "DEGRADED"
	VerdictBlocked    = "SPAWNING BLOCKED"
	VerdictNoCapacity = "NO CAPACITY"
	VerdictNoWorkers  = "NO WORKERS"
)

// Health labels of WorkerRow.Health.
const (
	HealthHealthy      = "HEALTHY"
	HealthInitializing = "INITIALIZING"
	HealthStale        = "STALE"
	HealthDraining     = "DRAINING"
	HealthTerminating  = "TERMINATING"
	HealthFailed       = "FAILED"
)

// DefaultSlowStart is the time to first heartbeat above which a
// placement's start-up is flagged (the seed's "alert if workers take >3 min
// to start").
const DefaultSlowStart = 3 * time.Minute

// Report is the status report: the seed document, generated.
type Report struct {
	Time time.Time `json:"time"`
	// Verdict is one of the Verdict… constants; Reason says why in words.
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	// Details are further facts behind the verdict, one line each.
	Details []string `json:"details"`
	// Recovered describes earlier trouble that is over ("3 failures
	// 25m ago; 2 workers reached ready since"), or is empty.
	Recovered string `json:"recovered,omitempty"`
	// WindowS is the breaker window in seconds (failures and start-up
	// statistics look back this far).
	WindowS float64 `json:"window_s"`

	Queue    Queue        `json:"queue"`
	Workers  WorkerCounts `json:"workers"`
	Pools    []Pool       `json:"pools"`
	Breakers []Breaker    `json:"breakers"`
	// WorkerTable lists live workers and rows on their way out
	// (terminating, failed and not yet terminated).
	// At most 200 rows: every worker that is not HEALTHY first, then
	// healthy ones; WorkerTableOmitted counts the rows left out.
	WorkerTable        []WorkerRow    `json:"worker_table"`
	WorkerTableOmitted int            `json:"worker_table_omitted"`
	Failures           []Failure      `json:"failures"`
	Startup            []StartupStats `json:"startup"`
	Spend              Spend          `json:"spend"`
	Hints              []string       `json:"hints"`
	Actions            []string       `json:"actions"`
	// Leader is the replica that runs the control loop (absent before any
	// election).
	Leader *Leader `json:"leader,omitempty"`
}

// Leader names the replica that leads and its term.
type Leader struct {
	ID        string    `json:"id"`
	Term      int64     `json:"term"`
	Since     time.Time `json:"since"`
	ExpiresAt time.Time `json:"expires_at"`
	// Expired is true when the lease ran out and no replica renewed it.
	Expired bool `json:"expired"`
}

// Queue is the task side of the report.
type Queue struct {
	Queued       int `json:"queued"`
	Claimable    int `json:"claimable"`
	OwnerBlocked int `json:"owner_blocked"`
	Running      int `json:"running"`
	// Capped says a pool has at least 1,000 queued (or claimable, or
	// owner-blocked) tasks: those counts are floors, not exact.
	Capped bool `json:"capped"`
	// CompletedLastHour and FailedLastHour count tasks that finished in
	// the last hour.
	CompletedLastHour int `json:"completed_last_hour"`
	FailedLastHour    int `json:"failed_last_hour"`
	// OldestClaimableWaitS is how long the oldest claimable task has
	// waited (nil when none is claimable).
	OldestClaimableWaitS *float64 `json:"oldest_claimable_wait_s,omitempty"`
	// OwnersAtLimit names the owners whose queued tasks wait only for
	// their running limit, with their counts.
	OwnersAtLimit []OwnerLimit `json:"owners_at_limit,omitempty"`
}

// OwnerLimit is one owner held at its running limit.
type OwnerLimit struct {
	Owner   string `json:"owner"`
	Running int    `json:"running"`
	Limit   int    `json:"limit"`
}

// WorkerCounts counts the rows of WorkerTable. Live counts states that cost
// money and count toward pool sizes; Leaving counts terminating and failed
// rows still being torn down. Total = Live + Leaving, and ByState sums to
// Total.
type WorkerCounts struct {
	Total   int            `json:"total"`
	Live    int            `json:"live"`
	Leaving int            `json:"leaving"`
	ByState map[string]int `json:"by_state"`
	// ByHealth counts WorkerTable by health label.
	ByHealth map[string]int `json:"by_health"`
}

// Pool is one configured pool's size, limits and spend.
type Pool struct {
	Name       string `json:"name"`
	Provider   string `json:"provider"`
	Live       int    `json:"live"`
	Ready      int    `json:"ready"`
	Min        int    `json:"min"`
	Max        int    `json:"max"`
	Candidates int    `json:"candidates"`
	Queued     int    `json:"queued"`
	Claimable  int    `json:"claimable"`
	Running    int    `json:"running"`
	// SpendPerHour sums the live workers' prices (USD/h); MaxHourlySpend
	// is the pool's cap (0 = none).
	SpendPerHour   float64 `json:"spend_per_hour"`
	MaxHourlySpend float64 `json:"max_hourly_spend"`
	// SpendLast24h is what the pool's workers cost in the last 24 h (USD).
	SpendLast24h float64 `json:"spend_last_24h"`
	// SpawnBlocked says why the pool cannot spawn now, or is empty.
	SpawnBlocked string `json:"spawn_blocked,omitempty"`
}

// Breaker is one placement key's breaker with the seed report's numbers.
type Breaker struct {
	Key    string `json:"key"`
	Pool   string `json:"pool"`
	GPU    string `json:"gpu"`
	Region string `json:"region"`
	Label  string `json:"label"`
	// State is closed, open or half-open.
	State string `json:"state"`
	// Failed of Recent start outcomes in the window failed.
	Failed      int     `json:"failed"`
	Recent      int     `json:"recent"`
	Rate        float64 `json:"rate"`
	Threshold   float64 `json:"threshold"`
	WindowS     float64 `json:"window_s"`
	MinSamples  int     `json:"min_samples"`
	Consecutive int     `json:"consecutive"`
	// MaxConsecutive failures in a row trip the breaker whatever the rate.
	MaxConsecutive int `json:"max_consecutive"`
	// Blocking says spawns on the key are refused now.
	Blocking bool `json:"blocking"`
	// CooldownLeftS is the time until the canary (open breakers).
	CooldownLeftS *float64   `json:"cooldown_left_s,omitempty"`
	CanaryAt      *time.Time `json:"canary_at,omitempty"`
	CanaryWorker  string     `json:"canary_worker,omitempty"`
	OpenedAt      *time.Time `json:"opened_at,omitempty"`
	// TopClass is the most frequent failure class in the window.
	TopClass string `json:"top_class,omitempty"`
	// Reason is why it opened; Summary the numbers in one line
	// ("failed 4/7 in last 30m → 57.1% vs threshold 80% …").
	Reason  string `json:"reason,omitempty"`
	Summary string `json:"summary"`
}

// WorkerRow is one line of the worker table.
type WorkerRow struct {
	ID        string `json:"id"`
	Pool      string `json:"pool"`
	Placement string `json:"placement"`
	State     string `json:"state"`
	Health    string `json:"health"`
	// HeartbeatAgeS is nil when the worker never beat.
	HeartbeatAgeS *float64 `json:"heartbeat_age_s,omitempty"`
	AgeS          float64  `json:"age_s"`
	TasksDone     int      `json:"tasks_done"`
	Running       int      `json:"running"`
	PricePerHour  float64  `json:"price_per_hour"`
	Failure       string   `json:"failure,omitempty"`
}

// Failure is one worker failure of the timeline.
type Failure struct {
	Time      time.Time `json:"time"`
	WorkerID  string    `json:"worker_id"`
	Pool      string    `json:"pool"`
	Placement string    `json:"placement"`
	Class     string    `json:"class"`
	Detail    string    `json:"detail"`
	// AgeAtFailureS is the worker's age when it failed.
	AgeAtFailureS float64 `json:"age_at_failure_s"`
	// AgoS is how long ago it failed.
	AgoS float64 `json:"ago_s"`
}

// StartupStats is one placement's time to first heartbeat over the
// workers that reached ready in the window.
type StartupStats struct {
	Placement string  `json:"placement"`
	Label     string  `json:"label"`
	Samples   int     `json:"samples"`
	P50S      float64 `json:"p50_s"`
	P95S      float64 `json:"p95_s"`
	MaxS      float64 `json:"max_s"`
	// Slow is set when p95 is above ThresholdS.
	Slow       bool    `json:"slow"`
	ThresholdS float64 `json:"threshold_s"`
}

// Spend is what the fleet costs.
type Spend struct {
	// PerHour sums the live workers' prices (USD/h).
	PerHour float64 `json:"per_hour"`
	// Last24h is what every pool cost in the last 24 h (USD).
	Last24h float64 `json:"last_24h"`
	// MaxHourlySpend is the global cap (0 = none).
	MaxHourlySpend float64 `json:"max_hourly_spend"`
}
