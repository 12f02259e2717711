package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/status"
)

func TestChartsBucketAndDraw(t *testing.T) {
	to := time.Date(2026, 1, 1, 13, 0, 0, 0, time.UTC)
	from := to.Add(-time.Hour)
	var pts []status.Point
	for i := 0; i <= 60; i++ {
		pts = append(pts, status.Point{Time: from.Add(time.Duration(i) * time.Minute), Queued: i, Running: 1,
			Workers: map[string]int{"ready": 2, "booting": i % 2}, Succeeded: 3, Failed: 1, SpendPerHour: 1.38})
	}
	// A point outside the range is ignored.
	pts = append(pts, status.Point{Time: to.Add(time.Minute), Queued: 1000})
	charts := buildCharts(pts, from, to)
	if len(charts) != 4 {
		t.Fatalf("%d charts, want 4", len(charts))
	}
	byID := map[string]string{}
	for _, c := range charts {
		byID[c.ID] = string(c.SVG)
	}
	q := byID["queue"]
	// Samples every minute in 30 s buckets: the line bridges the empty
	// buckets, so each series is one polyline.
	if n := strings.Count(q, "<polyline"); n != 2 {
		t.Fatalf("queue chart has %d polylines, want 2 (queued, running):\n%s", n, q)
	}
	// The top of the scale is a round number above the maximum (60),
	// not the out-of-range 1000.
	if !strings.Contains(q, ">100<") || strings.Contains(q, ">1000<") {
		t.Fatalf("queue chart scale:\n%s", q)
	}
	w := byID["workers"]
	if !strings.Contains(w, ">ready<") || !strings.Contains(w, ">booting<") || strings.Contains(w, ">draining<") {
		t.Fatalf("workers chart legend should list only the states that occur:\n%s", w)
	}
	// Throughput: counters are summed per bucket, one bar per bucket with
	// data and series.
	if n := strings.Count(byID["throughput"], `class="bar`); n != 2*61 {
		t.Fatalf("throughput chart has %d bars, want %d", n, 2*61)
	}
	if !strings.Contains(byID["spend"], "<polyline") {
		t.Fatal("spend chart has no line")
	}

	// No samples: frames without lines, never an error.
	for _, c := range buildCharts(nil, from, to) {
		if strings.Contains(string(c.SVG), "<polyline") || !strings.HasPrefix(string(c.SVG), "<svg") {
			t.Fatalf("empty chart %s:\n%s", c.ID, c.SVG)
		}
	}
}

func TestNiceMax(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.3: 0.5, 1: 1, 3: 5, 7: 10, 10: 10, 11: 20, 60: 100, 2.07: 5} {
		if got := niceMax(in); got != want {
			t.Errorf("niceMax(%v) = %v, want %v", in, got, want)
		}
	}
}
