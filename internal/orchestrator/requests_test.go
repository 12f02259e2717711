package orchestrator

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/storetest"
)

// A registration without GPUs in a pool that requires them is refused by
// the queue, which only requests the failure; the next tick fails the
// worker (gpu-missing) with its event and consumes the request.
func TestGPUMissingAppliedByTick(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	q := queue.New(h.st, h.clock, queue.Config{RequiresGPU: func(string) bool { return true }}, slog.New(slog.DiscardHandler))
	w := storetest.InsertWorker(t, h.raw, "default", core.WorkerBooting)
	if _, err := q.Register(h.ctx, w.ID, queue.RegisterInfo{AgentVersion: "1"}); core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("register without GPUs: %v, want EINVALID", err)
	}
	eq(t, "state before the tick", h.worker(w.ID).State, core.WorkerBooting)

	rep := h.tick()
	eq(t, "failure class", h.worker(w.ID).Failure, core.FailGPUMissing)
	eq(t, "reported failed", rep.Failed[w.ID], core.FailGPUMissing)
	found := false
	for _, e := range h.events(core.EventWorkerFailed) {
		var d map[string]any
		_ = json.Unmarshal(e.Data, &d)
		if e.WorkerID == w.ID.String() && d["class"] == string(core.FailGPUMissing) {
			found = true
		}
	}
	eq(t, "worker.failed event", found, true)
	left, err := h.raw.WorkerRequestList(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "requests left", len(left), 0)
}

// A request that no longer applies (the worker moved on) is dropped with
// an event and changes nothing.
func TestStaleRequestIgnored(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	w := storetest.InsertWorker(t, h.raw, "default", core.WorkerTerminating)
	if err := h.raw.WorkerRequestPut(h.ctx, &store.WorkerRequest{WorkerID: w.ID, Action: store.WorkerActionDrain,
		Reason: "operator", RequestedBy: "operator", RequestedAt: h.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	h.tick()
	if st := h.worker(w.ID).State; st == core.WorkerDraining {
		t.Fatalf("a terminating worker was drained")
	}
	ignored := 0
	for _, e := range h.events(core.EventWorkerState) {
		if e.WorkerID == w.ID.String() && strings.Contains(e.Message, "drain request by operator ignored") {
			ignored++
		}
	}
	eq(t, "ignored events", ignored, 1)
	left, err := h.raw.WorkerRequestList(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "requests left", len(left), 0)
}
