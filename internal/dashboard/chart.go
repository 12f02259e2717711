package dashboard

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/status"
)

// chartRanges are the look-backs a chart can show.
var chartRanges = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour}

// series is one line (or bar set) of a chart.
type series struct {
	Name string
	// Color is the palette index (CSS class s0…s6).
	Color  int
	Values []float64 // one per bucket; NaN = no data
}

// chart is a drawn chart with its name, for the page.
type chart struct {
	ID    string
	Title string
	SVG   template.HTML
}

// chartBuckets is how many points a chart has at most.
const chartBuckets = 120

// workerChartStates are the worker states drawn, in legend order.
var workerChartStates = []string{"ready", "booting", "provisioning", "requested", "draining", "terminating", "failed"}

// buildCharts buckets the sampled points over [from, to] and draws the
// four charts: gauges keep the last sample of a bucket, counters are summed.
func buildCharts(points []status.Point, from, to time.Time) []chart {
	n := chartBuckets
	step := to.Sub(from) / time.Duration(n)
	if step <= 0 {
		step = time.Second
	}
	idx := func(t time.Time) int {
		i := int(t.Sub(from) / step)
		if i >= n {
			i = n - 1
		}
		return i
	}
	nan := func() []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = math.NaN()
		}
		return v
	}
	queued, running, spend := nan(), nan(), nan()
	workers := map[string][]float64{}
	for _, st := range workerChartStates {
		workers[st] = nan()
	}
	done, failed := make([]float64, n), make([]float64, n)
	for _, s := range points {
		if s.Time.Before(from) || s.Time.After(to) {
			continue
		}
		i := idx(s.Time)
		// Gauges: the last sample of a bucket wins.
		queued[i], running[i], spend[i] = float64(s.Queued), float64(s.Running), s.SpendPerHour
		for _, st := range workerChartStates {
			workers[st][i] = float64(s.Workers[st])
		}
		// Counters: summed per bucket.
		done[i] += float64(s.Succeeded)
		failed[i] += float64(s.Failed)
	}
	// Workers by state: only the states that occur (ready always), so
	// the legend stays short.
	ws := make([]series, 0, len(workerChartStates))
	for i, st := range workerChartStates {
		if i == 0 || anyAbove0(workers[st]) {
			ws = append(ws, series{Name: st, Color: workerStateColor[st], Values: workers[st]})
		}
	}
	return []chart{
		{ID: "queue", Title: "Queue depth", SVG: drawLines(from, to, "tasks", []series{{"queued", 0, queued}, {"running", 1, running}})},
		{ID: "workers", Title: "Workers by state", SVG: drawLines(from, to, "workers", ws)},
		{ID: "throughput", Title: fmt.Sprintf("Task throughput (per %s)", fmtStep(step)), SVG: drawBars(from, to, "tasks", []series{{"completed", 1, done}, {"failed", 4, failed}})},
		{ID: "spend", Title: "Spend per hour", SVG: drawLines(from, to, "$/h", []series{{"$/h", 3, spend}})},
	}
}

func anyAbove0(vs []float64) bool {
	for _, v := range vs {
		if v > 0 {
			return true
		}
	}
	return false
}

// workerStateColor is the palette index of each worker state.
var workerStateColor = map[string]int{"ready": 1, "booting": 2, "provisioning": 3, "requested": 5, "draining": 0, "terminating": 6, "failed": 4}

// lineGap is how many empty buckets a line bridges before it breaks (the
// sampling interval can be longer than a bucket).
const lineGap = 6

func fmtStep(d time.Duration) string {
	if d >= time.Minute && d%time.Minute == 0 {
		return fmt.Sprintf("%d min", int(d/time.Minute))
	}
	return fmt.Sprintf("%d s", int(d.Round(time.Second)/time.Second))
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH                     = 480.0, 170.0
	padLeft, padRight, padTop, padBott = 46.0, 8.0, 22.0, 20.0
)

// niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

// frame draws the axes, grid, time labels and legend, and returns the
// scale of the plotted area.
func frame(b *strings.Builder, from, to time.Time, unit string, ss []series, top float64) {
	plotW, plotH := chartW-padLeft-padRight, chartH-padTop-padBott
	fmt.Fprintf(b, `<svg class="chart-svg" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		chartW, chartH, html.EscapeString(unit+" from "+from.UTC().Format("15:04")+" to "+to.UTC().Format("15:04")+" UTC"))
	for i := 0; i <= 2; i++ {
		y := padTop + plotH - plotH*float64(i)/2
		fmt.Fprintf(b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, padLeft, y, padLeft+plotW, y)
		fmt.Fprintf(b, `<text class="axis" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, padLeft-4, y+3, html.EscapeString(fmtNum(top*float64(i)/2)))
	}
	layout := "15:04"
	if to.Sub(from) > 12*time.Hour {
		layout = "Jan 2 15:04"
	}
	for i, anchor := range []string{"start", "middle", "end"} {
		t := from.Add(to.Sub(from) * time.Duration(i) / 2)
		fmt.Fprintf(b, `<text class="axis" x="%.1f" y="%.1f" text-anchor="%s">%s</text>`,
			padLeft+plotW*float64(i)/2, chartH-5, anchor, html.EscapeString(t.UTC().Format(layout)))
	}
	x := padLeft
	for _, s := range ss {
		fmt.Fprintf(b, `<rect class="swatch s%d" x="%.1f" y="6" width="10" height="10"/>`, s.Color, x)
		fmt.Fprintf(b, `<text class="legend" x="%.1f" y="15">%s</text>`, x+13, html.EscapeString(s.Name))
		x += 20 + 6.5*float64(len(s.Name))
	}
}

// drawLines draws gauges as polylines; a bucket without data breaks the
// line.
func drawLines(from, to time.Time, unit string, ss []series) template.HTML {
	top := 0.0
	for _, s := range ss {
		for _, v := range s.Values {
			if !math.IsNaN(v) && v > top {
				top = v
			}
		}
	}
	top = niceMax(top)
	var b strings.Builder
	frame(&b, from, to, unit, ss, top)
	plotW, plotH := chartW-padLeft-padRight, chartH-padTop-padBott
	for _, s := range ss {
		i := s.Color
		n := len(s.Values)
		var pts [][2]float64
		last := -1
		flush := func() {
			switch len(pts) {
			case 0:
			case 1:
				fmt.Fprintf(&b, `<circle class="dot s%d" cx="%.1f" cy="%.1f" r="2"/>`, i, pts[0][0], pts[0][1])
			default:
				fmt.Fprintf(&b, `<polyline class="line s%d" points="`, i)
				for k, p := range pts {
					if k > 0 {
						b.WriteByte(' ')
					}
					fmt.Fprintf(&b, "%.1f,%.1f", p[0], p[1])
				}
				b.WriteString(`"/>`)
			}
			pts = pts[:0]
		}
		for j, v := range s.Values {
			if math.IsNaN(v) {
				continue
			}
			if last >= 0 && j-last > lineGap {
				flush()
			}
			last = j
			x := padLeft + plotW*(float64(j)+0.5)/float64(n)
			y := padTop + plotH - plotH*v/top
			pts = append(pts, [2]float64{x, y})
		}
		flush()
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built only from numbers and escaped text
}

// drawBars draws counters as grouped bars.
func drawBars(from, to time.Time, unit string, ss []series) template.HTML {
	top := 0.0
	for _, s := range ss {
		for _, v := range s.Values {
			if v > top {
				top = v
			}
		}
	}
	top = niceMax(top)
	var b strings.Builder
	frame(&b, from, to, unit, ss, top)
	plotW, plotH := chartW-padLeft-padRight, chartH-padTop-padBott
	for k, s := range ss {
		n := len(s.Values)
		bw := plotW / float64(n) / float64(len(ss))
		for j, v := range s.Values {
			if v <= 0 || math.IsNaN(v) {
				continue
			}
			h := plotH * v / top
			x := padLeft + plotW*float64(j)/float64(n) + bw*float64(k)
			fmt.Fprintf(&b, `<rect class="bar s%d" x="%.2f" y="%.1f" width="%.2f" height="%.1f"/>`, s.Color, x, padTop+plotH-h, bw, h)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built only from numbers and escaped text
}
