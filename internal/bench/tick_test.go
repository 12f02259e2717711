package bench

import (
	"errors"
	"testing"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
)

func checkTick(t *testing.T, st store.Store, res *TickResult, cfg TickConfig) {
	t.Helper()
	if res.Workers != cfg.Workers || res.Tasks != cfg.Tasks || len(res.Ticks) != cfg.Ticks || len(res.Wakes) != cfg.Wakes {
		t.Fatalf("result echoes %d workers, %d tasks, %d ticks, %d wakes", res.Workers, res.Tasks, len(res.Ticks), len(res.Wakes))
	}
	if res.TickMin <= 0 || res.TickP50 < res.TickMin || res.TickMax < res.TickP50 || res.WakeP50 <= 0 || res.WakeMax < res.WakeP50 {
		t.Fatalf("implausible measurements: %+v", res)
	}
	if res.StoreCalls == 0 {
		t.Fatal("no store calls counted")
	}
	counts, err := st.TaskCountByState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if counts[core.TaskRunning] != cfg.Workers || counts[core.TaskQueued] != cfg.Tasks-cfg.Workers+cfg.Wakes {
		t.Fatalf("task counts after the run: %v", counts)
	}
	ws, err := st.WorkerList(t.Context(), &store.WorkerListParams{LiveOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != cfg.Workers+cfg.Wakes {
		t.Fatalf("%d live workers, want %d pre-loaded + %d spawned by wake-ups", len(ws), cfg.Workers, cfg.Wakes)
	}
}

func TestRunTickSQLite(t *testing.T) {
	st := openSQLite(t)
	cfg := TickConfig{Workers: 30, Busy: -1, Tasks: 300, Ticks: 3, Wakes: 2}
	res, err := RunTick(t.Context(), st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkTick(t, st, res, cfg)
	// A second run refuses: the database now has live workers.
	_, err = RunTick(t.Context(), st, cfg)
	if e, ok := errors.AsType[*core.Error](err); !ok || e.Field != "db" {
		t.Fatalf("second run on a used database: err = %v, want an EINVALID naming db", err)
	}
}

func TestRunTickRejectsBadInput(t *testing.T) {
	st := openSQLite(t)
	for _, tc := range []struct {
		cfg   TickConfig
		field string
	}{
		{TickConfig{Workers: -1}, "workers"},
		{TickConfig{Workers: 10, Tasks: 5}, "tasks"},
		{TickConfig{Workers: 10, Tasks: 10, Ticks: 5000}, "ticks"},
	} {
		_, err := RunTick(t.Context(), st, tc.cfg)
		if e, ok := errors.AsType[*core.Error](err); !ok || e.Field != tc.field {
			t.Fatalf("%+v: err = %v, want EINVALID naming %s", tc.cfg, err, tc.field)
		}
	}
}

func TestRunTickPostgres(t *testing.T) {
	st := pgtest.Open(t, 0)
	before, err := st.TaskCountByState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg := TickConfig{Workers: 20, Busy: 10, Tasks: 200, Ticks: 2, Wakes: 1}
	res, err := RunTick(t.Context(), st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Ticks) != 2 || len(res.Wakes) != 1 || res.TickP50 <= 0 {
		t.Fatalf("implausible result %+v", res)
	}
	after, err := st.TaskCountByState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if after[core.TaskRunning]-before[core.TaskRunning] != 10 {
		t.Fatalf("running before %v after %v", before, after)
	}
}
