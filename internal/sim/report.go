package sim

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/orchestrator"
	"github.com/droverhq/drover/internal/store"
)

// Report is what one simulation measured. The same inputs and seed give
// the same report, byte for byte.
type Report struct {
	Simulated time.Duration `json:"simulated_ns"`
	// Steps is the number of moments the clock stopped at (each one runs
	// the agents and one tick of the control loop).
	Steps int `json:"steps"`

	Cost     CostReport     `json:"cost"`
	Workers  WorkerReport   `json:"workers"`
	Tasks    TaskReport     `json:"tasks"`
	Breakers BreakerReport  `json:"breakers"`
	Poison   []PoisonReport `json:"poison,omitempty"`
}

// CostReport is what the fleet cost against the lower bound.
type CostReport struct {
	// GPUHours is billed instance time, create → terminated (or the end).
	GPUHours float64 `json:"gpu_hours"`
	Dollars  float64 `json:"dollars"`
	// LowerBound is Σ task durations, poison tasks excluded, in hours.
	LowerBound float64 `json:"lower_bound_hours"`
	// Ratio is GPUHours ÷ LowerBound.
	Ratio float64 `json:"ratio"`
}

// WorkerReport counts workers.
type WorkerReport struct {
	Created int `json:"created"`
	// Instances counts workers whose create call succeeded.
	Instances int `json:"instances"`
	// Failed counts failed workers by failure class.
	Failed map[string]int `json:"failed"`
	// TerminatedIdle counts workers scaled down (drained) for idleness.
	TerminatedIdle int `json:"terminated_idle"`
	// MeanIdle, MeanBooting and MeanBusy are time-weighted means of ready
	// idle, starting (requested, provisioning, booting) and ready busy
	// workers.
	MeanIdle    float64 `json:"mean_idle"`
	MeanBooting float64 `json:"mean_booting"`
	MeanBusy    float64 `json:"mean_busy"`
}

// TaskReport counts tasks and their waits.
type TaskReport struct {
	Total     int `json:"total"`
	Succeeded int `json:"succeeded"`
	// Failed counts failed tasks by reason.
	Failed     map[string]int `json:"failed"`
	Unfinished int            `json:"unfinished"`
	// Wait is arrival → start of the run that succeeded, in seconds.
	WaitP50 float64 `json:"wait_p50_s"`
	WaitP95 float64 `json:"wait_p95_s"`
	WaitP99 float64 `json:"wait_p99_s"`
}

// BreakerReport sums the breakers' trips and the time they spent open.
type BreakerReport struct {
	Trips int     `json:"trips"`
	Open  float64 `json:"open_s"`
}

// PoisonReport is what one poison task cost.
type PoisonReport struct {
	Line        int    `json:"line"`
	WorkersLost int    `json:"workers_lost"`
	State       string `json:"state"`
	Reason      string `json:"reason,omitempty"`
}

func newReport() *Report {
	return &Report{Workers: WorkerReport{Failed: map[string]int{}}, Tasks: TaskReport{Failed: map[string]int{}}}
}

// report reads the final state of the run.
func (r *run) report(ctx context.Context) (*Report, error) {
	rep := r.rep
	end := r.clock.Now()
	total := end.Sub(Epoch)
	rep.Simulated = total
	ws, err := r.st.WorkerList(ctx, &store.WorkerListParams{States: allWorkerStates})
	if err != nil {
		return nil, fmt.Errorf("simulate: list workers: %w", err)
	}
	for _, w := range ws {
		rep.Workers.Created++
		if w.Failure != "" {
			rep.Workers.Failed[string(w.Failure)]++
		}
		if w.InstanceID == "" {
			continue
		}
		rep.Workers.Instances++
		stop := end
		if w.TerminatedAt != nil {
			stop = *w.TerminatedAt
		}
		h := stop.Sub(w.CreatedAt).Hours()
		rep.Cost.GPUHours += h
		rep.Cost.Dollars += h * w.PricePerHour
	}
	rep.Workers.TerminatedIdle = r.drained
	if s := total.Seconds(); s > 0 {
		rep.Workers.MeanIdle = r.integ["idle"] / s
		rep.Workers.MeanBooting = r.integ["booting"] / s
		rep.Workers.MeanBusy = r.integ["busy"] / s
	}
	rep.Breakers.Open = r.integ["breaker_open"]

	var waits []float64
	for i, id := range r.ids {
		tt := r.opts.Trace[i]
		t, err := r.st.TaskGet(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("simulate: read task of line %d: %w", tt.Line, err)
		}
		rep.Tasks.Total++
		if !tt.Poison {
			rep.Cost.LowerBound += tt.Duration.Hours()
		}
		switch t.State {
		case core.TaskSucceeded:
			rep.Tasks.Succeeded++
			if t.StartedAt != nil {
				waits = append(waits, t.StartedAt.Sub(t.CreatedAt).Seconds())
			}
		case core.TaskFailed, core.TaskCancelled:
			rep.Tasks.Failed[reasonOf(t)]++
		default:
			rep.Tasks.Unfinished++
		}
		if tt.Poison {
			rep.Poison = append(rep.Poison, PoisonReport{Line: tt.Line, WorkersLost: t.Lost, State: string(t.State), Reason: t.Error})
		}
	}
	slices.Sort(waits)
	rep.Tasks.WaitP50, rep.Tasks.WaitP95, rep.Tasks.WaitP99 = percentile(waits, 50), percentile(waits, 95), percentile(waits, 99)
	if rep.Cost.LowerBound > 0 {
		rep.Cost.Ratio = rep.Cost.GPUHours / rep.Cost.LowerBound
	}
	return rep, nil
}

// reasonOf is a failed task's reason, shortened to its first clause.
func reasonOf(t *core.Task) string {
	msg := cmp.Or(t.Error, string(t.State))
	if i := strings.IndexAny(msg, ":(\n"); i > 0 {
		msg = strings.TrimSpace(msg[:i])
	}
	return msg
}

// line is one row of the printed report.
type line struct {
	section, name string
	value         float64
	format        func(float64) string
}

func num(f float64) string   { return fmt.Sprintf("%.0f", f) }
func hours(f float64) string { return fmt.Sprintf("%.2f h", f) }
func usd(f float64) string   { return fmt.Sprintf("$%.2f", f) }
func two(f float64) string   { return fmt.Sprintf("%.2f", f) }
func secs(f float64) string {
	return (time.Duration(f*float64(time.Second)) + time.Second/2).Truncate(time.Second).String()
}

// lines flattens the report into printable rows; keys lists the failure
// classes and reasons to show (so two reports line up).
func (rep *Report) lines(classes, reasons []string) []line {
	ls := []line{
		{"cost", "GPU-hours billed (create → terminated)", rep.Cost.GPUHours, hours},
		{"cost", "dollars", rep.Cost.Dollars, usd},
		{"cost", "lower bound (Σ task durations, poison excluded)", rep.Cost.LowerBound, hours},
		{"cost", "billed ÷ lower bound", rep.Cost.Ratio, two},
		{"workers", "created", float64(rep.Workers.Created), num},
		{"workers", "with an instance", float64(rep.Workers.Instances), num},
	}
	for _, c := range classes {
		ls = append(ls, line{"workers", "failed: " + c, float64(rep.Workers.Failed[c]), num})
	}
	ls = append(ls,
		line{"workers", "terminated idle", float64(rep.Workers.TerminatedIdle), num},
		line{"workers", "mean idle", rep.Workers.MeanIdle, two},
		line{"workers", "mean booting", rep.Workers.MeanBooting, two},
		line{"workers", "mean busy", rep.Workers.MeanBusy, two},
		line{"tasks", "total", float64(rep.Tasks.Total), num},
		line{"tasks", "succeeded", float64(rep.Tasks.Succeeded), num},
	)
	for _, r := range reasons {
		ls = append(ls, line{"tasks", "failed: " + r, float64(rep.Tasks.Failed[r]), num})
	}
	ls = append(ls,
		line{"tasks", "unfinished", float64(rep.Tasks.Unfinished), num},
		line{"tasks", "wait p50 (arrival → start of the run that succeeded)", rep.Tasks.WaitP50, secs},
		line{"tasks", "wait p95", rep.Tasks.WaitP95, secs},
		line{"tasks", "wait p99", rep.Tasks.WaitP99, secs},
		line{"breakers", "trips", float64(rep.Breakers.Trips), num},
		line{"breakers", "time open", rep.Breakers.Open, secs},
	)
	for _, p := range rep.Poison {
		ls = append(ls, line{"poison", fmt.Sprintf("line %d: workers lost", p.Line), float64(p.WorkersLost), num})
	}
	return ls
}

// Header describes the inputs of a run, for the first lines of a report.
type Header struct {
	Trace, World, Config string
	Tasks                int
	Seed                 uint64
}

func keysOf(reps ...*Report) (classes, reasons []string) {
	c, r := map[string]bool{}, map[string]bool{}
	for _, rep := range reps {
		for k := range rep.Workers.Failed {
			c[k] = true
		}
		for k := range rep.Tasks.Failed {
			r[k] = true
		}
	}
	return slices.Sorted(maps.Keys(c)), slices.Sorted(maps.Keys(r))
}

// Print writes the report as text.
func (rep *Report) Print(w io.Writer, h Header) error {
	fmt.Fprintf(w, "drover simulate: trace %s (%d tasks), world %s (seed %d), config %s\n", h.Trace, h.Tasks, h.World, h.Seed, h.Config)
	fmt.Fprintf(w, "simulated %s in %d steps of the control loop\n", rep.Simulated, rep.Steps)
	classes, reasons := keysOf(rep)
	var rows [][2]string
	section := ""
	for _, l := range rep.lines(classes, reasons) {
		if l.section != section {
			section = l.section
			rows = append(rows, [2]string{section, ""})
		}
		rows = append(rows, [2]string{"  " + l.name, l.format(l.value)})
	}
	for _, p := range rep.Poison {
		rows = append(rows, [2]string{fmt.Sprintf("  line %d: final state", p.Line), p.State})
		if p.Reason != "" {
			rows = append(rows, [2]string{fmt.Sprintf("  line %d: reason", p.Line), p.Reason})
		}
	}
	wn := 0
	for _, r := range rows {
		wn = max(wn, utf8.RuneCountInString(r[0]))
	}
	for _, r := range rows {
		if r[1] == "" {
			fmt.Fprintln(w, r[0])
			continue
		}
		if _, err := fmt.Fprintf(w, "%s%s  %s\n", r[0], strings.Repeat(" ", wn-utf8.RuneCountInString(r[0])), r[1]); err != nil {
			return err
		}
	}
	return nil
}

// PrintVs writes two reports side by side with the ratio b ÷ a of every
// line (1.00 where both are equal, zero included).
func PrintVs(w io.Writer, h Header, nameA, nameB string, a, b *Report) error {
	fmt.Fprintf(w, "drover simulate: trace %s (%d tasks), world %s (seed %d)\n", h.Trace, h.Tasks, h.World, h.Seed)
	fmt.Fprintf(w, "A = %s, B = %s; simulated %s (A: %d steps, B: %d steps)\n", nameA, nameB, a.Simulated, a.Steps, b.Steps)
	classes, reasons := keysOf(a, b)
	la, lb := a.lines(classes, reasons), b.lines(classes, reasons)
	if len(la) != len(lb) {
		// Different poison lines cannot happen on one trace; be safe.
		return fmt.Errorf("simulate: the two reports do not line up")
	}
	// Names left-aligned, figures right-aligned.
	type row struct{ name, a, b, r string }
	rows := []row{{"", "A", "B", "B ÷ A"}}
	section := ""
	for i := range la {
		if la[i].section != section {
			section = la[i].section
			rows = append(rows, row{name: section})
		}
		rows = append(rows, row{"  " + la[i].name, la[i].format(la[i].value), lb[i].format(lb[i].value), ratio(la[i].value, lb[i].value)})
	}
	var wn, wa, wb, wr int
	for _, r := range rows {
		wn, wa = max(wn, utf8.RuneCountInString(r.name)), max(wa, utf8.RuneCountInString(r.a))
		wb, wr = max(wb, utf8.RuneCountInString(r.b)), max(wr, utf8.RuneCountInString(r.r))
	}
	pad := func(s string, n int) string { return strings.Repeat(" ", max(0, n-utf8.RuneCountInString(s))) }
	for _, r := range rows {
		if r.a == "" && r.r == "" {
			if _, err := fmt.Fprintln(w, r.name); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintf(w, "%s%s  %s%s  %s%s  %s%s\n", r.name, pad(r.name, wn), pad(r.a, wa), r.a, pad(r.b, wb), r.b, pad(r.r, wr), r.r); err != nil {
			return err
		}
	}
	return nil
}

func ratio(a, b float64) string {
	switch {
	case a == b:
		return "1.00"
	case a == 0:
		return "n/a"
	}
	return fmt.Sprintf("%.2f", b/a)
}

// timelineHeader is the first line of a --timeline CSV.
const timelineHeader = "t_s,queued,claimable,running,requested,provisioning,booting,ready,idle,draining,terminating,failed,desired,spawned,failed_now,ready_now,drained,terminated,blocked"

// timeline writes one row for the tick just run.
func (r *run) timeline(ctx context.Context, tr *orchestrator.TickReport, live []*core.Worker) error {
	d, err := r.q.Demand(ctx)
	if err != nil {
		return fmt.Errorf("simulate: timeline demand: %w", err)
	}
	var queued, claimable, running, desired int
	for _, name := range slices.Sorted(maps.Keys(d)) {
		queued += d[name].Queued
		claimable += d[name].Claimable
		running += d[name].Running
	}
	for _, dec := range tr.Decisions {
		desired += dec.Desired
	}
	n := map[core.WorkerState]int{}
	idle := 0
	for _, w := range live {
		n[w.State]++
		if w.State == core.WorkerReady && w.Running == 0 {
			idle++
		}
	}
	_, err = fmt.Fprintf(r.opts.Timeline, "%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d\n",
		seconds(r.clock.Now().Sub(Epoch)), queued, claimable, running,
		n[core.WorkerRequested], n[core.WorkerProvisioning], n[core.WorkerBooting], n[core.WorkerReady], idle,
		n[core.WorkerDraining], n[core.WorkerTerminating], n[core.WorkerFailed], desired,
		len(tr.Spawned), len(tr.Failed), len(tr.Ready), len(tr.Drained), len(tr.Terminated), len(tr.Blocked))
	if err != nil {
		return fmt.Errorf("simulate: write timeline: %w", err)
	}
	return nil
}
