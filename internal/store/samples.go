package store

import (
	"context"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// Reporting is what status, why and the dashboard read besides the core
// tables, plus the small time series of samples (one row per pool per
// sample, written by the leader, read by the dashboard's charts). Both
// backends implement it (store/sqlite/samples.go,
// store/postgres/samples.go); storetest/samples.go proves they agree.
type Reporting interface {
	// SampleInsertMany appends samples (one per pool, usually, all at the
	// same Time). A sample whose (Time, Pool) already exists is replaced.
	SampleInsertMany(ctx context.Context, samples []*Sample) error
	// SampleList returns the samples with Since <= Time <= Until, oldest
	// first (then by pool). Pool, when set, selects one pool. At most
	// Limit rows (default 10000, max 100000).
	SampleList(ctx context.Context, params *SampleListParams) ([]*Sample, error)
	// SamplePrune deletes samples older than before and returns how many.
	SamplePrune(ctx context.Context, before time.Time) (int, error)
	// TaskFinishedCount counts tasks that reached succeeded and failed with
	// Since < finished_at <= Until (an index read on finished_at).
	TaskFinishedCount(ctx context.Context, since, until time.Time) (succeeded, failed int, err error)
	// WorkerSpend returns, per pool, the money spent in [Since, Until]:
	// each worker's price per hour times the part of its life (created_at
	// to terminated_at, or Until while it lives) that falls in the window.
	WorkerSpend(ctx context.Context, since, until time.Time) (map[string]float64, error)
	// TaskOldestReady returns the created_at of the oldest queued task
	// with run_after <= now and no pending dependency (owner limits
	// aside), or nil when there is none.
	TaskOldestReady(ctx context.Context, now time.Time) (*time.Time, error)
	// TaskRunningByOwner returns the owners with at least atLeast running
	// tasks, with their counts.
	TaskRunningByOwner(ctx context.Context, atLeast int) (map[string]int, error)
	// WorkerGroups counts the workers WorkerListParams.LiveOnly selects,
	// grouped by pool, state, whether a failure class is set and whether a
	// ready worker is stale (no heartbeat, or the last one before
	// staleBefore), with the sum of their prices and their latest ready_at:
	// the report's counts without reading every row.
	WorkerGroups(ctx context.Context, staleBefore time.Time) ([]*WorkerGroup, error)
	// WorkerAttentionIDs returns the ids of at most limit workers of the
	// same set: first those that are not healthy (anything but a ready
	// worker that heartbeated at or after staleBefore), then healthy ones,
	// each group oldest first (created_at, id).
	WorkerAttentionIDs(ctx context.Context, staleBefore time.Time, limit int) ([]uuid.UUID, error)
	// EventRecent returns the events of one of kinds with Since <= time,
	// latest first (by time, then id), at most limit (1..MaxEventListLimit):
	// per kind a backward range of the (kind, time) index, so its cost is
	// bounded by limit and the window, never by the size of the log.
	EventRecent(ctx context.Context, kinds []core.EventKind, since time.Time, limit int) ([]*core.Event, error)
	// WorkerStarts returns the workers (any state) whose ready_at is in
	// (since, until], at most limit, latest first: a range of the
	// workers_ready index.
	WorkerStarts(ctx context.Context, since, until time.Time, limit int) ([]*WorkerStart, error)
}

// WorkerStart is one worker's start-up: created at CreatedAt, ready at
// ReadyAt.
type WorkerStart struct {
	Placement string
	CreatedAt time.Time
	ReadyAt   time.Time
}

// WorkerGroup is one group of WorkerGroups.
type WorkerGroup struct {
	Pool  string
	State core.WorkerState
	// Failed says the workers have a failure class.
	Failed bool
	// Stale says the (ready) workers have no heartbeat since staleBefore.
	Stale bool
	Count int
	// PricePerHour is the sum of the workers' prices, USD per hour.
	PricePerHour float64
	// LastReadyAt is the latest ready_at of the group, nil when none.
	LastReadyAt *time.Time
}

// Sample is one pool's numbers at one time.
type Sample struct {
	Time time.Time `json:"time"`
	Pool string    `json:"pool"`
	// Queued, Claimable and Running count tasks of the pool.
	Queued    int `json:"queued"`
	Claimable int `json:"claimable"`
	Running   int `json:"running"`
	// Workers by state (live states plus terminating and failed rows not
	// yet terminated).
	Requested    int `json:"requested"`
	Provisioning int `json:"provisioning"`
	Booting      int `json:"booting"`
	Ready        int `json:"ready"`
	Draining     int `json:"draining"`
	Terminating  int `json:"terminating"`
	Failed       int `json:"failed"`
	// Succeeded and TasksFailed count the tasks that finished since the
	// previous sample. Task throughput is fleet-wide: it is carried on the
	// row of pool SampleFleetPool, which also holds the sums of every other
	// field over the pools; per-pool rows have 0 here.
	Succeeded   int `json:"succeeded"`
	TasksFailed int `json:"tasks_failed"`
	// SpendPerHour is the sum of the live workers' prices, USD per hour.
	SpendPerHour float64 `json:"spend_per_hour"`
}

// SampleListParams filters SampleList.
type SampleListParams struct {
	Since time.Time
	Until time.Time
	Pool  string
	Limit int
}

// SampleFleetPool is the pool name of the fleet-wide sample row that
// carries the task throughput (Succeeded, TasksFailed).
const SampleFleetPool = "_all"

// Default and maximum number of rows of SampleList.
const (
	DefaultSampleListLimit = 10_000
	MaxSampleListLimit     = 100_000
)
