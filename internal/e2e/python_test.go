package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
)

// TestPythonExampleHandler runs examples/python/handler.py under a real
// agent on a (fake) RunPod pod: a result, progress, a final failure and a
// retried one.
func TestPythonExampleHandler(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is required in CI for the example handler test")
		}
		t.Skip("SKIPPED LOUDLY: python3 is not installed, so examples/python/handler.py is not tested")
	}
	handler, err := filepath.Abs(filepath.Join("..", "..", "examples", "python", "handler.py"))
	if err != nil {
		t.Fatal(err)
	}
	e := newRPEnv(t, rpOpts{min: 1, max: 1, agents: true, exec: py + " " + handler})
	params := []string{
		`{"text":"drover","repeat":3}`,
		`{"text":"x","fail":"final"}`,
		`{"text":"again","repeat":1,"fail":"retry"}`,
		`{"repeat":2}`,
	}
	reqs := make([]wire.SubmitRequest, len(params))
	for i, p := range params {
		reqs[i] = wire.SubmitRequest{Type: "py", Pool: "gpu", Params: json.RawMessage(p)}
	}
	res, err := e.c.SubmitBatch(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor("4 tasks final", 90*time.Second, func() bool {
		n := 0
		for _, tk := range e.tasks() {
			if tk.State.Terminal() {
				n++
			}
		}
		return n == 4
	})
	get := func(i int) *wire.Task {
		tk, err := e.c.Task(context.Background(), res[i].Task.ID)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	var out struct {
		Text    string `json:"text"`
		Length  int    `json:"length"`
		Attempt int    `json:"attempt"`
		Pod     string `json:"pod"`
	}
	t0 := get(0)
	if t0.State != core.TaskSucceeded || json.Unmarshal(t0.Result, &out) != nil || out.Text != "DROVER DROVER DROVER" || out.Pod == "" {
		t.Errorf("task 0: %s %s", t0.State, t0.Result)
	}
	if t1 := get(1); t1.State != core.TaskFailed || t1.Attempt != 1 {
		t.Errorf("final failure: %s after %d attempts", t1.State, t1.Attempt)
	}
	t2 := get(2)
	if t2.State != core.TaskSucceeded || json.Unmarshal(t2.Result, &out) != nil || out.Attempt != 2 {
		t.Errorf("retried task: %s %s", t2.State, t2.Result)
	}
	if t3 := get(3); t3.State != core.TaskFailed {
		t.Errorf("bad params: %s", t3.State)
	}
}
