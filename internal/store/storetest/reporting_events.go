package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

func reportingEventCases() []suiteCase {
	return []suiteCase{
		{name: "EventRecent", fn: testEventRecent},
	}
}

// EventRecent returns the window's events of the asked kinds, latest
// first, cut to the limit over all kinds together.
func testEventRecent(t *testing.T, s store.Store) {
	ctx := t.Context()
	var evs []*core.Event
	// Inserted out of time order on purpose: the order is by time.
	for _, c := range []struct {
		at   time.Duration
		kind core.EventKind
	}{
		{1 * time.Minute, core.EventWorkerFailed}, // before the window
		{12 * time.Minute, core.EventTaskRequeued},
		{10 * time.Minute, core.EventWorkerFailed},
		{11 * time.Minute, core.EventTick}, // another kind
		{13 * time.Minute, core.EventTaskFailed},
		{14 * time.Minute, core.EventWorkerFailed},
		{5 * time.Minute, core.EventTaskRequeued}, // the window's first instant
	} {
		evs = append(evs, &core.Event{Time: At(c.at), Kind: c.kind, Pool: "gpu", WorkerID: "w", TaskID: "t",
			Message: string(c.kind), Data: json.RawMessage(`{"class":"boot-timeout"}`)})
	}
	noErr(t, "EventInsertMany", s.EventInsertMany(ctx, evs))
	minutes := func(es []*core.Event) string {
		out := []int{}
		for _, e := range es {
			out = append(out, int(e.Time.Sub(At(0))/time.Minute))
		}
		return fmt.Sprint(out)
	}

	got, err := s.EventRecent(ctx, []core.EventKind{core.EventWorkerFailed}, At(5*time.Minute), 100)
	noErr(t, "EventRecent(worker.failed)", err)
	eq(t, "worker.failed in the window, latest first", minutes(got), "[14 10]")
	g, w := got[0], evs[5]
	eq(t, "round trip", fmt.Sprint(g.ID, g.Time, g.Kind, g.Pool, g.WorkerID, g.TaskID, g.Message, string(g.Data)),
		fmt.Sprint(w.ID, w.Time, w.Kind, w.Pool, w.WorkerID, w.TaskID, w.Message, string(w.Data)))

	got, err = s.EventRecent(ctx, []core.EventKind{core.EventTaskRequeued, core.EventTaskFailed, core.EventWorkerFailed}, At(5*time.Minute), 4)
	noErr(t, "EventRecent(three kinds)", err)
	eq(t, "merged by time, cut to 4", minutes(got), "[14 13 12 10]")

	got, err = s.EventRecent(ctx, []core.EventKind{core.EventTaskRequeued}, At(5*time.Minute), 100)
	noErr(t, "EventRecent(task.requeued)", err)
	eq(t, "since is inclusive", minutes(got), "[12 5]")

	got, err = s.EventRecent(ctx, nil, At(0), 100)
	noErr(t, "EventRecent(no kinds)", err)
	eq(t, "no kinds, no events", len(got), 0)

	_, err = s.EventRecent(ctx, []core.EventKind{core.EventTick}, At(0), store.MaxEventListLimit+1)
	eq(t, "EventRecent(limit too large)", core.ErrorCode(err), core.EINVALID)
}
