package bench

import (
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
		res, err := RunStatus(t.Context(), openSQLite(t), cfg)
		check(t, res, err)
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
}
