package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/provider/runpod/fakerunpod"
)

func TestRunRunPod(t *testing.T) {
	res, err := RunRunPod(t.Context(), RunPodConfig{Workers: 12, Rate5xx: 0.05, Rate429: 0.05, Quota: 100, Window: 5 * time.Second,
		CapacityErrors: 2, Tick: 100 * time.Millisecond, MaxSpawnPerTick: 4, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 12 {
		t.Errorf("%d pods created, want exactly 12", res.Created)
	}
	if res.Calls[fakerunpod.RouteDelete] < 12 {
		t.Errorf("%d deletes for 12 pods", res.Calls[fakerunpod.RouteDelete])
	}
	if res.SpawnsPerSec <= 0 || res.EndsPer <= 0 || res.CreateGetPerWorker < 1 {
		t.Errorf("implausible result %+v", res)
	}
	if len(res.CapacityDelays) == 0 || res.CapP99 < res.CapP50 {
		t.Errorf("capacity delays %v", res.CapacityDelays)
	}
	if res.LimiterBudgetExceeded {
		t.Errorf("%d requests in one window, budget %d", res.MaxInWindow, res.Cfg.Quota)
	}
	var b bytes.Buffer
	res.Print(&b)
	if !strings.Contains(b.String(), "spawns/s") || !strings.Contains(b.String(), "capacity error") {
		t.Errorf("output:\n%s", b.String())
	}
}
