package status

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// SeriesReport is the fleet's sampled numbers for charts, oldest first.
type SeriesReport struct {
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	Points []Point   `json:"points"`
	// Pools lists the pools seen in the samples.
	Pools []string `json:"pools"`
}

// Point is the fleet at one sample time (summed over pools).
type Point struct {
	Time      time.Time `json:"time"`
	Queued    int       `json:"queued"`
	Claimable int       `json:"claimable"`
	Running   int       `json:"running"`
	// Workers by state.
	Workers map[string]int `json:"workers"`
	// Succeeded and Failed count tasks finished since the previous point.
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	// SpendPerHour is the fleet's price per hour at that time (USD/h);
	// PoolSpend the same per pool.
	SpendPerHour float64            `json:"spend_per_hour"`
	PoolSpend    map[string]float64 `json:"pool_spend"`
}

// Series returns the sampled fleet between since and until, oldest first:
// one point per sample time, from the fleet row (pool store.SampleFleetPool)
// with each pool's spend beside it.
func Series(ctx context.Context, st store.Store, since, until time.Time) (*SeriesReport, error) {
	rows, err := st.SampleList(ctx, &store.SampleListParams{Since: since, Until: until, Limit: maxSeriesRows})
	if err != nil {
		return nil, fmt.Errorf("status: list samples: %w", err)
	}
	rep := &SeriesReport{Since: since, Until: until, Points: []Point{}, Pools: []string{}}
	pools := map[string]bool{}
	var cur *Point
	for _, s := range rows {
		if cur == nil || !cur.Time.Equal(s.Time) {
			rep.Points = append(rep.Points, Point{Time: s.Time, Workers: map[string]int{}, PoolSpend: map[string]float64{}})
			cur = &rep.Points[len(rep.Points)-1]
		}
		if s.Pool != store.SampleFleetPool {
			pools[s.Pool] = true
			cur.PoolSpend[s.Pool] = s.SpendPerHour
			continue
		}
		cur.Queued, cur.Claimable, cur.Running = s.Queued, s.Claimable, s.Running
		cur.Succeeded, cur.Failed, cur.SpendPerHour = s.Succeeded, s.TasksFailed, s.SpendPerHour
		for state, n := range map[core.WorkerState]int{core.WorkerRequested: s.Requested, core.WorkerProvisioning: s.Provisioning,
			core.WorkerBooting: s.Booting, core.WorkerReady: s.Ready, core.WorkerDraining: s.Draining,
			core.WorkerTerminating: s.Terminating, core.WorkerFailed: s.Failed} {
			cur.Workers[string(state)] = n
		}
	}
	rep.Pools = slices.Sorted(maps.Keys(pools))
	return rep, nil
}

// maxSeriesRows bounds one Series read (a day of 1-minute samples of 60
// pools).
const maxSeriesRows = 100_000
