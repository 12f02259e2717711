package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/google/uuid"
)

// A heartbeat that raced a completion (the server completed the task, then
// answered the heartbeat that still carried its lease) must not make the
// agent report the lease as lost or kill anything: the handler is done.
// A task whose handler still runs is killed as before.
func TestLeaseLostAfterHandlerFinishedIsSilent(t *testing.T) {
	var logs bytes.Buffer
	a := New(newFakeServer(), Options{
		WorkerID: uuid.New(),
		GPU:      StaticGPUs{},
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
	})
	done := wire.Lease{TaskID: uuid.New(), Token: uuid.New()}
	busy := wire.Lease{TaskID: uuid.New(), Token: uuid.New()}
	doneCancelled, busyCancelled := false, false
	a.tasks[done.TaskID] = &runningTask{lease: done, cancel: func() { doneCancelled = true }, finished: true}
	a.tasks[busy.TaskID] = &runningTask{lease: busy, cancel: func() { busyCancelled = true }}

	a.obey(&wire.HeartbeatResponse{LostLeases: []wire.Lease{done, busy}})

	if doneCancelled || a.tasks[done.TaskID].lost {
		t.Error("a finished task was treated as lost")
	}
	if strings.Count(logs.String(), "lease lost") != 1 || !strings.Contains(logs.String(), busy.TaskID.String()) {
		t.Errorf("want exactly one lease-lost line, for the running task; logs:\n%s", logs.String())
	}
	if !busyCancelled || !a.tasks[busy.TaskID].lost {
		t.Error("a running task whose lease was lost was not killed")
	}
}
