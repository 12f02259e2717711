package bench

import (
	"log/slog"
	"testing"
	"time"
)

// TestRunAPISmall runs the API benchmark at a tiny size on SQLite: it must
// hand out every task exactly once (RunAPI verifies that) and report
// consistent figures. It asserts no speed.
func TestRunAPISmall(t *testing.T) {
	for _, batch := range []int{1, 5} {
		st := openSQLite(t)
		cfg := APIConfig{Agents: 4, Tasks: 40, Samples: 3, Batch: batch, HeartbeatFor: 100 * time.Millisecond,
			HeartbeatInFlight: 2, Logger: slog.New(slog.DiscardHandler)}
		res, err := RunAPI(t.Context(), st, cfg)
		if err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		if res.Tasks != 40 || res.Agents != 4 || res.Batch != batch || res.Samples != 3 || res.HeartbeatLoops != 8 {
			t.Fatalf("result echoes %+v", res)
		}
		if res.TasksPerSec <= 0 || res.StartP99 < res.StartP50 || res.StartMax < res.StartP99 || res.ClaimP99 < res.ClaimP50 {
			t.Fatalf("implausible measurements: %+v", res)
		}
	}
}
