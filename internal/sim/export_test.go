package sim

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/sqlite"
)

// TestPoisonAndExport simulates the poison trace on a store it keeps. The
// poison task ends failed with its reason after max_lost (3) workers and
// every other task succeeds. Then it exports that store: the trace comes
// back (arrivals, owners, run times, the poison task marked) and the fitted
// world parses, with a boot median near the world's 120 s.
func TestPoisonAndExport(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sim.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	in, err := ParseTrace(strings.NewReader(readFile(t, examples+"poison.csv")), "poison.csv")
	if err != nil {
		t.Fatal(err)
	}
	w, err := ParseWorld([]byte(readFile(t, examples+"poison.world.yaml")), "poison.world.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig([]byte(readFile(t, examples+"drover.yaml")), "drover.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, Options{Trace: in, World: w, Config: cfg, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Poison) != 1 {
		t.Fatalf("poison tasks = %+v, want one", rep.Poison)
	}
	if p := rep.Poison[0]; p.State != "failed" || p.WorkersLost != 3 || !strings.Contains(p.Reason, "lost 3 times") {
		t.Errorf("poison = %+v, want failed after 3 lost workers with the reason", p)
	}
	if rep.Tasks.Succeeded != rep.Tasks.Total-1 || rep.Tasks.Unfinished != 0 {
		t.Errorf("tasks = %+v, want every other task succeeded", rep.Tasks)
	}
	if rep.Workers.Failed["heartbeat-lost"] != 3 || len(rep.Workers.Failed) != 1 {
		t.Errorf("failed workers = %v, want 3 heartbeat-lost", rep.Workers.Failed)
	}

	var tasks []*core.Task
	for _, s := range []core.TaskState{core.TaskSucceeded, core.TaskFailed} {
		page, err := st.TaskList(ctx, &store.TaskListParams{States: []core.TaskState{s}, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, page...)
	}
	workers, err := st.WorkerList(ctx, &store.WorkerListParams{States: allWorkerStates})
	if err != nil {
		t.Fatal(err)
	}
	trace, world, stats := Export(tasks, workers, Epoch, Epoch.Add(rep.Simulated))
	if len(trace) != len(in) || stats.Skipped != 0 {
		t.Fatalf("exported %d tasks (%d skipped), want %d", len(trace), stats.Skipped, len(in))
	}
	for i := range in {
		got, want := trace[i], in[i]
		if got.Arrival != want.Arrival || got.Owner != want.Owner || got.Poison != want.Poison {
			t.Errorf("task %d = %+v, want %+v", i, got, want)
		}
		if !want.Poison && got.Duration != want.Duration {
			t.Errorf("task %d ran %s, want %s", i, got.Duration, want.Duration)
		}
	}
	var out bytes.Buffer
	if err := WriteWorld(&out, world, stats, Epoch, Epoch.Add(rep.Simulated)); err != nil {
		t.Fatal(err)
	}
	back, err := ParseWorld(out.Bytes(), "fitted.yaml")
	if err != nil {
		t.Fatalf("fitted world does not parse: %v\n%s", err, out.String())
	}
	p := back.Placements["*"]
	if m := p.Boot.Median.D(); p.Boot.Kind != "lognormal" || m < 90*time.Second || m > 160*time.Second {
		t.Errorf("fitted boot = %s, want lognormal with a median near 120s\n%s", p.Boot.String(), out.String())
	}
	if back.PricePerHour != 0.69 {
		t.Errorf("fitted price = %g, want 0.69", back.PricePerHour)
	}
	if p.CrashPerHour <= 0 {
		t.Errorf("fitted crash rate = %g, want > 0 (the poison task killed 3 workers)", p.CrashPerHour)
	}
	var tb bytes.Buffer
	if err := WriteTrace(&tb, trace); err != nil {
		t.Fatal(err)
	}
	if again, err := ParseTrace(&tb, "exported.csv"); err != nil || len(again) != len(in) {
		t.Fatalf("exported trace does not parse back: %v (%d tasks)", err, len(again))
	}
}
