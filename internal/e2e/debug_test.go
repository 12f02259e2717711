package e2e

import (
	"context"
	"testing"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
)

// dump logs what a failed test needs to be understood: unfinished tasks
// with their events and agent logs, and every worker.
func (e *env) dump(t *testing.T) {
	for _, tk := range e.allTasks() {
		if tk.State.Terminal() {
			continue
		}
		t.Logf("task %s %s attempt %d failures %d lost %d worker %v run_after %v lease_exp %v", tk.ID, tk.State, tk.Attempt, tk.Failures, tk.Lost, tk.WorkerID, tk.RunAfter, tk.LeaseExpiresAt)
		evs, _ := e.c.Events(context.Background(), wire.EventFilter{TaskID: tk.ID.String(), Limit: 20})
		for _, ev := range evs {
			t.Logf("  event %s %s %s", ev.Time.Format("15:04:05.000"), ev.Kind, ev.Message)
		}
		if tk.State == core.TaskRunning && tk.WorkerID != nil {
			t.Logf("  agent log:\n%s", lastLines(e.agentLog(*tk.WorkerID), 20))
		}
	}
	ws, _ := e.c.Workers(context.Background(), wire.WorkerFilter{Limit: 1000})
	for _, w := range ws {
		t.Logf("worker %s %s %s %s hb %v done %d", w.ID, w.State, w.Failure, w.Reason, w.LastHeartbeatAt, w.TasksDone)
	}
	evs, _ := e.c.Events(context.Background(), wire.EventFilter{Limit: 15})
	for _, ev := range evs {
		t.Logf("event %s %s %s %s", ev.Time.Format("15:04:05.000"), ev.Kind, ev.WorkerID, ev.Message)
	}
}
