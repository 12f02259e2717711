package sim

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
)

// ExportStats says what an export took in and left out.
type ExportStats struct {
	Tasks, Skipped   int // exported tasks; tasks left out (unfinished, never ran)
	Workers, Booted  int // workers created in the window; those that reached ready
	BootSamples      int
	FailedByClass    map[string]int
	CapacityFailures int
}

// Export turns real tasks and workers created in [since, now) into a trace
// (arrival from since, owner, type, pool, priority, measured run time of
// the last run; a task failed for losing max_lost workers is poison) and a
// world fitted from the workers: a lognormal boot (create → ready) from the
// measured start-up times, the never-boot fraction (boot- and
// provision-timeouts), the crash rate per ready instance-hour
// (heartbeat-lost), and the mean price.
func Export(tasks []*core.Task, workers []*core.Worker, since, now time.Time) ([]TraceTask, *World, ExportStats) {
	st := ExportStats{FailedByClass: map[string]int{}}
	var trace []TraceTask
	for _, t := range tasks {
		if t.CreatedAt.Before(since) || !t.CreatedAt.Before(now) {
			continue
		}
		poison := t.State == core.TaskFailed && t.MaxLost > 0 && t.Lost >= t.MaxLost
		if t.StartedAt == nil || (t.FinishedAt == nil && !poison) {
			st.Skipped++
			continue
		}
		d := time.Duration(0)
		if t.FinishedAt != nil {
			d = t.FinishedAt.Sub(*t.StartedAt)
		}
		trace = append(trace, TraceTask{Arrival: t.CreatedAt.Sub(since).Truncate(time.Millisecond), Owner: cmp.Or(t.Owner, "-"),
			Duration: max(0, d).Truncate(time.Millisecond), Poison: poison, Type: t.Type, Pool: t.Pool, Priority: t.Priority})
	}
	slices.SortStableFunc(trace, func(a, b TraceTask) int { return cmp.Compare(a.Arrival, b.Arrival) })
	st.Tasks = len(trace)

	var logs []float64
	var readyHours, price float64
	var priced, crashes, neverBoot, started int
	for _, w := range workers {
		if w.CreatedAt.Before(since) || !w.CreatedAt.Before(now) {
			continue
		}
		st.Workers++
		if w.Failure != "" {
			st.FailedByClass[string(w.Failure)]++
		}
		switch w.Failure {
		case core.FailCapacity, core.FailQuota, core.FailInvalidRequest, core.FailProvider:
			st.CapacityFailures++
			continue // never got an instance
		case core.FailBootTimeout, core.FailProvisionTimeout:
			neverBoot++
		}
		started++
		if w.PricePerHour > 0 {
			price += w.PricePerHour
			priced++
		}
		if w.ReadyAt == nil {
			continue
		}
		st.Booted++
		if boot := w.ReadyAt.Sub(w.CreatedAt); boot > 0 {
			logs = append(logs, math.Log(boot.Seconds()))
		}
		end := now
		if w.TerminatedAt != nil {
			end = *w.TerminatedAt
		} else if w.State == core.WorkerFailed {
			end = w.StateChangedAt
		}
		readyHours += max(0, end.Sub(*w.ReadyAt).Hours())
		if w.Failure == core.FailHeartbeatLost || w.Failure == core.FailAgentExit {
			crashes++
		}
	}
	st.BootSamples = len(logs)
	p := &Placement{Boot: fitBoot(logs)}
	if started > 0 {
		p.NeverBoot = round(float64(neverBoot)/float64(started), 4)
	}
	if readyHours > 0 {
		p.CrashPerHour = round(float64(crashes)/readyHours, 4)
	}
	world := &World{Seed: 1, RunAfterLastArrival: config.Duration(time.Hour), PoisonKillAfter: config.Duration(time.Second), Placements: map[string]*Placement{"*": p}}
	if priced > 0 {
		world.PricePerHour = round(price/float64(priced), 4)
	}
	return trace, world, st
}

// fitBoot fits a lognormal to log boot times in seconds (median and sigma
// by moments), fixed with one sample, 5 minutes with none.
func fitBoot(logs []float64) Dist {
	switch len(logs) {
	case 0:
		return Dist{Kind: "fixed", Value: config.Duration(5 * time.Minute), set: map[string]bool{"dist": true, "value": true}}
	case 1:
		return Dist{Kind: "fixed", Value: secondsDur(math.Exp(logs[0])), set: map[string]bool{"dist": true, "value": true}}
	}
	var mean, ss float64
	for _, l := range logs {
		mean += l
	}
	mean /= float64(len(logs))
	for _, l := range logs {
		ss += (l - mean) * (l - mean)
	}
	sigma := math.Sqrt(ss / float64(len(logs)-1))
	return Dist{Kind: "lognormal", Median: secondsDur(math.Exp(mean)), Sigma: round(sigma, 4),
		set: map[string]bool{"dist": true, "median": true, "sigma": true}}
}

func secondsDur(s float64) config.Duration {
	return config.Duration(time.Duration(math.Round(s)) * time.Second)
}

func round(f float64, places int) float64 {
	p := math.Pow10(places)
	return math.Round(f*p) / p
}

// WriteWorld writes w as a world YAML with comments on where its numbers
// came from.
func WriteWorld(out io.Writer, w *World, st ExportStats, since, now time.Time) error {
	p := w.Placements["*"]
	var boot string
	switch p.Boot.Kind {
	case "lognormal":
		boot = fmt.Sprintf("{dist: lognormal, median: %s, sigma: %g}", p.Boot.Median, p.Boot.Sigma)
	default:
		boot = fmt.Sprintf("{dist: fixed, value: %s}", p.Boot.Value)
	}
	classes := ""
	for _, k := range slices.Sorted(maps.Keys(st.FailedByClass)) {
		classes += fmt.Sprintf(" %s=%d", k, st.FailedByClass[k])
	}
	if classes == "" {
		classes = " none"
	}
	_, err := fmt.Fprintf(out, `# Fitted by drover trace export from %s to %s:
# %d workers created, %d reached ready (%d boot samples); failed by class:%s.
# %d creates failed at the provider (capacity, quota…): not modelled as outages;
# add capacity_outages by hand if they came in windows.
seed: %d
price_per_hour: %g
run_after_last_arrival: 1h
placements:
  "*":
    running_after: 0s        # not measured: create → running is not recorded per worker
    boot: %s
    never_boot: %g
    crash_per_hour: %g
    capacity_outages: []
poison_kill_after: 1s
`, since.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), st.Workers, st.Booted, st.BootSamples, classes,
		st.CapacityFailures, w.Seed, w.PricePerHour, boot, p.NeverBoot, p.CrashPerHour)
	return err
}
