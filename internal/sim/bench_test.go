package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// BenchmarkSeedIncident simulates the seed incident (6 h, 188 tasks) with
// the default policy; it reports the control-loop steps per second.
func BenchmarkSeedIncident(b *testing.B) {
	trace := readFileB(b, examples+"seed-incident.csv")
	world := readFileB(b, examples+"seed-incident.world.yaml")
	cfg := readFileB(b, examples+"drover.yaml")
	benchRun(b, trace, world, cfg)
}

// BenchmarkDay simulates a generated 24-hour trace of 1,500 tasks.
func BenchmarkDay(b *testing.B) {
	world := readFileB(b, examples+"seed-incident.world.yaml")
	cfg := readFileB(b, examples+"drover.yaml")
	benchRun(b, GenerateTrace(1500, 24*3600, 7), world, cfg)
}

func benchRun(b *testing.B, trace, world, cfg string) {
	tr, err := ParseTrace(strings.NewReader(trace), "trace.csv")
	if err != nil {
		b.Fatal(err)
	}
	w, err := ParseWorld([]byte(world), "world.yaml")
	if err != nil {
		b.Fatal(err)
	}
	c, err := LoadConfig([]byte(cfg), "drover.yaml", nil)
	if err != nil {
		b.Fatal(err)
	}
	steps := 0
	for b.Loop() {
		rep, err := Run(b.Context(), Options{Trace: tr, World: w, Config: c})
		if err != nil {
			b.Fatal(err)
		}
		steps += rep.Steps
	}
	b.ReportMetric(float64(steps)/b.Elapsed().Seconds(), "steps/s")
}

func readFileB(b *testing.B, path string) string {
	b.Helper()
	data, err := readFileErr(path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// GenerateTrace returns a trace CSV of n tasks arriving uniformly over
// span seconds from 10 owners, durations 1–9 minutes (seeded).
func GenerateTrace(n int, span float64, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, seed))
	arr := make([]float64, n)
	for i := range arr {
		arr[i] = r.Float64() * span
	}
	sortFloats(arr)
	var sb strings.Builder
	sb.WriteString("arrival_s,owner,duration_s,poison\n")
	for _, a := range arr {
		fmt.Fprintf(&sb, "%.3f,u%02d,%.3f,0\n", a, r.IntN(10), 60+r.Float64()*480)
	}
	return sb.String()
}
