package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

func outputCases() []suiteCase {
	return []suiteCase{
		{name: "OutputsRecordedWithCompletion", fn: testOutputsRecordedWithCompletion},
		{name: "ManyOutputsRecorded", fn: testManyOutputsRecorded},
	}
}

// testOutputsRecordedWithCompletion: outputs are recorded only with the
// completion of a held lease, exactly once; expired ones are listed and
// deleted.
func testOutputsRecordedWithCompletion(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertTasks(t, s, NewTask())
	task := Claim(t, s, w, At(time.Second), 1, 0)[0]
	lease := LeaseOf(t, task)
	mk := func(name string, exp time.Time) *core.Output {
		return &core.Output{
			TaskID: task.ID, Name: name, Attempt: task.Attempt, Size: 3, SHA256: "abc", ContentType: "text/plain",
			BlobKey: "tasks/" + task.ID.String() + "/" + name, CreatedAt: At(2 * time.Second), ExpiresAt: exp,
		}
	}
	outs := []*core.Output{mk("b.txt", At(time.Hour)), mk("a.txt", At(2*time.Hour))}

	// A stale lease records nothing.
	stale := lease
	stale.Token = NewTask().ID
	err := s.TaskCompleteOutputs(ctx, &store.TaskCompleteOutputsParams{
		Now: At(2 * time.Second), WorkerID: w.ID, Completion: store.TaskCompletion{Lease: stale}, Outputs: outs,
	})
	isErr(t, "stale lease", err, core.ErrLeaseLost)
	got, err := s.OutputList(ctx, task.ID)
	noErr(t, "OutputList", err)
	eq(t, "outputs after stale completion", len(got), 0)

	noErr(t, "TaskCompleteOutputs", s.TaskCompleteOutputs(ctx, &store.TaskCompleteOutputsParams{
		Now: At(2 * time.Second), WorkerID: w.ID, Completion: store.TaskCompletion{Lease: lease}, Outputs: outs,
	}))
	eq(t, "state", Get(t, s, task.ID).State, core.TaskSucceeded)
	eq(t, "worker tasks_done", GetWorker(t, s, w.ID).TasksDone, 1)
	got, err = s.OutputList(ctx, task.ID)
	noErr(t, "OutputList", err)
	eq(t, "outputs", len(got), 2)
	eq(t, "first by name", got[0].Name, "a.txt")
	eq(t, "size", got[0].Size, int64(3))
	eq(t, "blob key", got[0].BlobKey, outs[1].BlobKey)
	timeEq(t, "expires", got[0].ExpiresAt, At(2*time.Hour))

	// A second completion of the same lease changes nothing.
	err = s.TaskCompleteOutputs(ctx, &store.TaskCompleteOutputsParams{
		Now: At(3 * time.Second), WorkerID: w.ID, Completion: store.TaskCompletion{Lease: lease}, Outputs: outs[:1],
	})
	isErr(t, "second completion", err, core.ErrLeaseLost)

	exp, err := s.OutputListExpired(ctx, At(90*time.Minute), 10)
	noErr(t, "OutputListExpired", err)
	eq(t, "expired", len(exp), 1)
	eq(t, "expired name", exp[0].Name, "b.txt")
	noErr(t, "OutputDelete", s.OutputDelete(ctx, exp))
	got, err = s.OutputList(ctx, task.ID)
	noErr(t, "OutputList", err)
	eq(t, "outputs after delete", len(got), 1)
}

// testManyOutputsRecorded: a completion records every one of many
// outputs (more than one insert statement's worth) with its fields.
func testManyOutputsRecorded(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	InsertTasks(t, s, NewTask())
	task := Claim(t, s, w, At(time.Second), 1, 0)[0]
	const n = 250
	outs := make([]*core.Output, n)
	for i := range outs {
		name := fmt.Sprintf("f%03d.bin", i)
		outs[i] = &core.Output{
			TaskID: task.ID, Name: name, Attempt: task.Attempt, Size: int64(i), SHA256: fmt.Sprintf("%064x", i),
			ContentType: "application/octet-stream", BlobKey: "tasks/" + task.ID.String() + "/" + name,
			CreatedAt: At(2 * time.Second), ExpiresAt: At(time.Duration(i+1) * time.Hour),
		}
	}
	noErr(t, "TaskCompleteOutputs", s.TaskCompleteOutputs(ctx, &store.TaskCompleteOutputsParams{
		Now: At(2 * time.Second), WorkerID: w.ID, Completion: store.TaskCompletion{Lease: LeaseOf(t, task)}, Outputs: outs,
	}))
	got, err := s.OutputList(ctx, task.ID)
	noErr(t, "OutputList", err)
	eq(t, "outputs", len(got), n)
	for i, o := range got {
		want := outs[i]
		if o.TaskID != want.TaskID || o.Name != want.Name || o.Attempt != want.Attempt || o.Size != want.Size ||
			o.SHA256 != want.SHA256 || o.ContentType != want.ContentType || o.BlobKey != want.BlobKey {
			t.Fatalf("output %d = %+v, want %+v", i, o, want)
		}
		timeEq(t, "created", o.CreatedAt, want.CreatedAt)
		timeEq(t, "expires", o.ExpiresAt, want.ExpiresAt)
	}
}
