package sim

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/store/postgres/pgtest"
)

// simRun parses the inputs and runs one simulation.
func simRun(t *testing.T, trace, world, cfg string, sets []string, timeline *bytes.Buffer) *Report {
	t.Helper()
	tr, err := ParseTrace(strings.NewReader(trace), "trace.csv")
	if err != nil {
		t.Fatalf("trace: %v", err)
	}
	w, err := ParseWorld([]byte(world), "world.yaml")
	if err != nil {
		t.Fatalf("world: %v", err)
	}
	c, err := LoadConfig([]byte(cfg), "drover.yaml", sets)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	opts := Options{Trace: tr, World: w, Config: c}
	if timeline != nil {
		opts.Timeline = timeline
	}
	rep, err := Run(t.Context(), opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return rep
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := readFileErr(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readFileErr(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

func sortFloats(xs []float64) { slices.Sort(xs) }

const handConfig = `
pools:
  default:
    provider: sim
    min: 0
    max: 10
    idle_timeout: 1m
    candidates: [{gpu: RTX4090, regions: [EU-RO-1]}]
`

const handWorld = `
seed: 1
price_per_hour: 3.60
run_after_last_arrival: 5m
placements:
  "*":
    running_after: 10s
    boot: 40s
`

const handTrace = `arrival_s,owner,duration_s,poison
0,u1,100,0
10,u2,50,0
200,u1,30,0
`

// TestHandComputed replays three tasks with fixed boots (create → running
// 10 s, create → first heartbeat 40 s) on a 2 s tick and idle_timeout 1m:
//
//	t=0    A arrives; the tick spawns W1 (boots at 40)
//	t=10   B arrives; W1 is provisioning, so the tick spawns W2 (boots at 50)
//	t=40   W1 registers and claims A (wait 40 s); A ends at 140
//	t=50   W2 registers and claims B (wait 40 s); B ends at 100
//	t=160  W2 idle since 100 for 60 s (idle_timeout): drained
//	t=200  C arrives; W1 (idle since 140, 60 s only at 200) claims it at once (wait 0)
//	t=230  C ends; t=290 W1 idle for 60 s: drained
//
// A drained worker with nothing running goes terminating at the next tick
// (2 s) and is gone at the provider by the one after, so W2 is billed
// 10 → 164 and W1 0 → 294: 448 s, 0.1244 h, $0.448 at $3.60/h.
func TestHandComputed(t *testing.T) {
	var tl bytes.Buffer
	rep := simRun(t, handTrace, handWorld, handConfig, nil, &tl)
	t.Logf("timeline:\n%s", tl.String())
	if got := rep.Cost.GPUHours * 3600; abs(got-448) > 1e-6 {
		t.Errorf("GPU-seconds = %.3f, want 448", got)
	}
	if abs(rep.Cost.Dollars-0.448) > 1e-9 {
		t.Errorf("dollars = %.6f, want 0.448", rep.Cost.Dollars)
	}
	if abs(rep.Cost.LowerBound*3600-180) > 1e-6 {
		t.Errorf("lower bound = %.3f s, want 180", rep.Cost.LowerBound*3600)
	}
	if rep.Tasks.WaitP50 != 40 || rep.Tasks.WaitP95 != 40 || rep.Tasks.WaitP99 != 40 {
		t.Errorf("waits p50/p95/p99 = %v/%v/%v, want 40/40/40", rep.Tasks.WaitP50, rep.Tasks.WaitP95, rep.Tasks.WaitP99)
	}
	if rep.Workers.Created != 2 || rep.Workers.Instances != 2 || rep.Workers.TerminatedIdle != 2 || len(rep.Workers.Failed) != 0 {
		t.Errorf("workers = %+v, want 2 created, 2 terminated idle, none failed", rep.Workers)
	}
	if rep.Tasks.Succeeded != 3 || rep.Tasks.Unfinished != 0 || len(rep.Tasks.Failed) != 0 {
		t.Errorf("tasks = %+v, want 3 succeeded", rep.Tasks)
	}
	if rep.Simulated != 500*time.Second {
		t.Errorf("simulated %s, want 8m20s (5m after the last arrival)", rep.Simulated)
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

const examples = "../../examples/sim/"

// TestSeedIncident replays the seed incident (boots of 330 ± 15 s): with
// boot_timeout 300s every boot is killed at 300 s and the breaker trips;
// with the default (15m) no worker fails and every task succeeds.
func TestSeedIncident(t *testing.T) {
	trace := readFile(t, examples+"seed-incident.csv")
	world := readFile(t, examples+"seed-incident.world.yaml")
	cfg := readFile(t, examples+"drover.yaml")

	t.Run("boot_timeout 300s", func(t *testing.T) {
		rep := simRun(t, trace, world, cfg, []string{"pools.default.boot_timeout=300s"}, nil)
		bootTimeouts := rep.Workers.Failed["boot-timeout"]
		if bootTimeouts == 0 || bootTimeouts < rep.Workers.Instances-1 {
			t.Errorf("boot-timeout failures = %d of %d instances, want (nearly) all", bootTimeouts, rep.Workers.Instances)
		}
		if len(rep.Workers.Failed) != 1 {
			t.Errorf("failure classes = %v, want only boot-timeout", rep.Workers.Failed)
		}
		if rep.Breakers.Trips == 0 || rep.Breakers.Open <= 0 {
			t.Errorf("breakers = %+v, want trips and time open", rep.Breakers)
		}
		if rep.Tasks.Succeeded == rep.Tasks.Total {
			t.Errorf("every task succeeded although no worker ever booted in time")
		}
		var out bytes.Buffer
		if err := rep.Print(&out, Header{}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"failed: boot-timeout", "trips", "time open"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, out.String())
			}
		}
	})
	t.Run("default boot_timeout", func(t *testing.T) {
		rep := simRun(t, trace, world, cfg, nil, nil)
		if len(rep.Workers.Failed) != 0 {
			t.Errorf("failed workers = %v, want none", rep.Workers.Failed)
		}
		if rep.Tasks.Succeeded != 188 || rep.Tasks.Total != 188 {
			t.Errorf("succeeded %d of %d, want 188 of 188", rep.Tasks.Succeeded, rep.Tasks.Total)
		}
		if rep.Breakers.Trips != 0 {
			t.Errorf("breaker trips = %d, want 0", rep.Breakers.Trips)
		}
		if abs(rep.Cost.LowerBound-13.87) > 0.005 {
			t.Errorf("lower bound = %.3f h, want 13.87", rep.Cost.LowerBound)
		}
	})
}

// TestDeterminism: the same inputs and seed give a byte-identical report,
// text and JSON, in a world with random boots, never-booting instances and
// crashes.
func TestDeterminism(t *testing.T) {
	world := `
seed: 5
price_per_hour: 1.10
run_after_last_arrival: 20m
placements:
  "*":
    running_after: 20s
    boot: {dist: lognormal, median: 90s, p95: 200s}
    never_boot: 0.2
    crash_per_hour: 2
`
	trace := GenerateTrace(40, 3600, 3)
	h := Header{Trace: "t.csv", World: "w.yaml", Config: "c.yaml", Tasks: 40, Seed: 5}
	var outs [2]bytes.Buffer
	var reps [2]*Report
	for i := range outs {
		reps[i] = simRun(t, trace, world, handConfig, nil, nil)
		if err := reps[i].Print(&outs[i], h); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(outs[0].Bytes(), outs[1].Bytes()) {
		t.Errorf("two runs differ:\n%s\n---\n%s", outs[0].String(), outs[1].String())
	}
	j0, _ := json.Marshal(reps[0])
	j1, _ := json.Marshal(reps[1])
	if !bytes.Equal(j0, j1) {
		t.Errorf("JSON differs:\n%s\n%s", j0, j1)
	}
	if len(reps[0].Workers.Failed) == 0 {
		t.Errorf("no worker failed in a world with never-booting instances and crashes: the randomness was not exercised\n%s", outs[0].String())
	}
}

// TestVsSelf: a config against itself reports 1.00 on every line.
func TestVsSelf(t *testing.T) {
	a := simRun(t, handTrace, handWorld, handConfig, nil, nil)
	b := simRun(t, handTrace, handWorld, handConfig, nil, nil)
	var out bytes.Buffer
	if err := PrintVs(&out, Header{}, "a.yaml", "a.yaml", a, b); err != nil {
		t.Fatal(err)
	}
	rows, table := 0, false
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		if strings.Contains(l, "B ÷ A") {
			table = true
			continue
		}
		if !table || len(f) < 4 {
			continue // header or section line
		}
		rows++
		if got := f[len(f)-1]; got != "1.00" {
			t.Errorf("line %q: ratio %s, want 1.00", l, got)
		}
	}
	if rows < 15 {
		t.Errorf("only %d ratio lines:\n%s", rows, out.String())
	}
}

// TestHandComputedPostgres runs the hand-computed scenario on PostgreSQL
// (--db): the same report as on SQLite, byte for byte.
func TestHandComputedPostgres(t *testing.T) {
	st := pgtest.Open(t, 0)
	parse := func() Options {
		tr, err := ParseTrace(strings.NewReader(handTrace), "trace.csv")
		if err != nil {
			t.Fatal(err)
		}
		w, err := ParseWorld([]byte(handWorld), "world.yaml")
		if err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig([]byte(handConfig), "drover.yaml", nil)
		if err != nil {
			t.Fatal(err)
		}
		return Options{Trace: tr, World: w, Config: c}
	}
	opts := parse()
	opts.Store = st
	pg, err := Run(t.Context(), opts)
	if err != nil {
		t.Fatalf("run on postgres: %v", err)
	}
	lite, err := Run(t.Context(), parse())
	if err != nil {
		t.Fatalf("run on sqlite: %v", err)
	}
	var a, b bytes.Buffer
	if err := pg.Print(&a, Header{}); err != nil {
		t.Fatal(err)
	}
	if err := lite.Print(&b, Header{}); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Errorf("postgres and sqlite reports differ:\n%s\n---\n%s", a.String(), b.String())
	}
	if got := pg.Cost.GPUHours * 3600; abs(got-448) > 1e-6 {
		t.Errorf("GPU-seconds on postgres = %.3f, want 448", got)
	}
	// A database that already holds rows is refused.
	if _, err := Run(t.Context(), Options{Trace: opts.Trace, World: opts.World, Config: opts.Config, Store: st}); err == nil || !strings.Contains(err.Error(), "empty database") {
		t.Errorf("second run on the same database: err = %v, want it refused", err)
	}
}
