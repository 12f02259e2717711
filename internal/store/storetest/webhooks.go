package storetest

import (
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

func webhookCases() []suiteCase {
	return []suiteCase{
		{name: "WebhookOutbox", fn: testWebhookOutbox},
	}
}

// testWebhookOutbox: a callback moves to the outbox only once its task is
// final, once; a claim is a compare-and-set on the attempt count; updates
// take a delivery out of the due list.
func testWebhookOutbox(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	tasks := InsertTasks(t, s, NewTask(), NewTask())
	noErr(t, "WebhookCallbackPut", s.WebhookCallbackPut(ctx, []store.WebhookCallback{
		{TaskID: tasks[0].ID, URL: "http://a.example/hook"},
		{TaskID: tasks[1].ID, URL: "http://b.example/hook"},
	}))
	// A second put keeps the first URL.
	noErr(t, "WebhookCallbackPut again", s.WebhookCallbackPut(ctx, []store.WebhookCallback{{TaskID: tasks[0].ID, URL: "http://other/"}}))

	n, err := s.WebhookEnqueue(ctx, At(time.Second))
	noErr(t, "WebhookEnqueue", err)
	eq(t, "enqueued before any task is final", n, 0)

	claimed := Claim(t, s, w, At(time.Second), 2, 0)
	var done *core.Task
	for _, c := range claimed {
		if c.ID == tasks[0].ID {
			done = c
		}
	}
	if done == nil {
		t.Fatalf("task %s not claimed", tasks[0].ID)
	}
	lost, err := s.TaskComplete(ctx, []*store.TaskCompleteParams{{Now: At(2 * time.Second), WorkerID: w.ID,
		Items: []store.TaskCompletion{{Lease: LeaseOf(t, done)}}}})
	noErr(t, "TaskComplete", err)
	eq(t, "lost", len(lost[0]), 0)

	n, err = s.WebhookEnqueue(ctx, At(3*time.Second))
	noErr(t, "WebhookEnqueue", err)
	eq(t, "enqueued", n, 1)
	n, err = s.WebhookEnqueue(ctx, At(4*time.Second))
	noErr(t, "WebhookEnqueue again", err)
	eq(t, "enqueued again", n, 0)

	due, err := s.WebhookDue(ctx, At(3*time.Second), 10)
	noErr(t, "WebhookDue", err)
	eq(t, "due", len(due), 1)
	d := due[0]
	eq(t, "id", d.ID, tasks[0].ID.String()+":succeeded")
	eq(t, "url", d.URL, "http://a.example/hook")
	eq(t, "state", d.State, "succeeded")
	eq(t, "status", d.Status, store.WebhookPending)
	eq(t, "attempts", d.Attempts, 0)
	timeEq(t, "created", d.CreatedAt, At(3*time.Second))

	ok, err := s.WebhookClaim(ctx, d, At(time.Minute))
	noErr(t, "WebhookClaim", err)
	eq(t, "claimed", ok, true)
	ok, err = s.WebhookClaim(ctx, d, At(time.Minute))
	noErr(t, "WebhookClaim twice", err)
	eq(t, "claimed twice", ok, false)
	due, err = s.WebhookDue(ctx, At(30*time.Second), 10)
	noErr(t, "WebhookDue while claimed", err)
	eq(t, "due while claimed", len(due), 0)
	due, err = s.WebhookDue(ctx, At(time.Minute), 10)
	noErr(t, "WebhookDue after claim expiry", err)
	eq(t, "due after claim expiry", len(due), 1)
	eq(t, "attempts after claim", due[0].Attempts, 1)

	d = due[0]
	d.Status, d.LastError, d.NextAt = store.WebhookDelivered, "", At(time.Minute)
	noErr(t, "WebhookUpdate", s.WebhookUpdate(ctx, d))
	due, err = s.WebhookDue(ctx, At(time.Hour), 10)
	noErr(t, "WebhookDue after delivery", err)
	eq(t, "due after delivery", len(due), 0)
}
