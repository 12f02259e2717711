package bench

import (
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/status"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
)

func TestRunStatusSmall(t *testing.T) {
	check := func(t *testing.T, res *StatusResult, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Builds) != 3 || res.BuildP50 <= 0 || res.WhyTaskP50 <= 0 || res.WhyWorkerP50 <= 0 || res.WhyPoolP50 <= 0 {
			t.Fatalf("result = %+v", res)
		}
		if res.Verdict != status.VerdictHealthy && res.Verdict != status.VerdictDegraded {
			t.Errorf("verdict = %s", res.Verdict)
		}
	}
	cfg := StatusConfig{Workers: 20, Tasks: 3000, Queued: 100, Events: 2000, Builds: 3}
	t.Run("sqlite", func(t *testing.T) {
		st := openSQLite(t)
		res, err := RunStatus(t.Context(), st, cfg)
		check(t, res, err)
		if len(res.Steps) == 0 || res.Steps["WorkerGroups"] <= 0 {
			t.Errorf("steps = %v, want a time per read", res.Steps)
		}
		// --reuse times the same fleet again without loading it; the
		// loaded clock, workers and running task are found again.
		again, err := RunStatus(t.Context(), st, StatusConfig{Builds: 3, Reuse: true})
		check(t, again, err)
		if again.Load != 0 || again.Workers != cfg.Workers || again.Verdict != res.Verdict {
			t.Errorf("reuse: load %s, workers %d, verdict %s; want 0, %d, %s", again.Load, again.Workers, again.Verdict, cfg.Workers, res.Verdict)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		res, err := RunStatus(t.Context(), pgtest.Open(t, 8), cfg)
		check(t, res, err)
	})
}

func TestRunStatusRejectsBadInput(t *testing.T) {
	st := openSQLite(t)
	if _, err := RunStatus(t.Context(), st, StatusConfig{Workers: 10, Tasks: 5}); err == nil {
		t.Error("tasks below workers + queued accepted")
	}
	if _, err := RunStatus(t.Context(), st, StatusConfig{Reuse: true}); err == nil || !strings.Contains(err.Error(), "reuse") {
		t.Errorf("reuse of an empty database: err = %v, want one naming reuse", err)
	}
}
