package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

func miscCases() []suiteCase {
	return []suiteCase{
		{name: "EventsInsertListPaging", fn: testEventsInsertListPaging},
		{name: "LogsInsertListPaging", fn: testLogsInsertListPaging},
		{name: "Prune", rule: testPrune},
		{name: "ListLimits", fn: testListLimits},
		{name: "Breakers", fn: testBreakers},
		{name: "LeaderElection", fn: testLeaderElection},
		{name: "LeaderTerms", fn: testLeaderTerms},
	}
}

func testEventsInsertListPaging(t *testing.T, s store.Store) {
	var evs []*core.Event
	for i := range 10 {
		e := &core.Event{Time: At(time.Duration(i) * time.Second), Kind: core.EventTaskClaimed, Pool: core.DefaultPool,
			WorkerID: "w1", TaskID: fmt.Sprintf("t%d", i%3), Message: fmt.Sprintf("event %d", i)}
		if i%2 == 1 {
			e.Kind = core.EventScaleUp
			e.Pool = "big"
			e.WorkerID = "w2"
			e.Data = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
		}
		evs = append(evs, e)
	}
	noErr(t, "EventInsertMany", s.EventInsertMany(t.Context(), evs[:4]))
	noErr(t, "EventInsertMany", s.EventInsertMany(t.Context(), evs[4:]))
	for i := 1; i < len(evs); i++ {
		if evs[i].ID <= evs[i-1].ID {
			t.Fatalf("event ids not increasing: %d then %d", evs[i-1].ID, evs[i].ID)
		}
	}
	list := func(p store.EventListParams) []*core.Event {
		t.Helper()
		got, err := s.EventList(t.Context(), &p)
		noErr(t, "EventList", err)
		return got
	}
	msgs := func(es []*core.Event) []string {
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.Message
		}
		return out
	}
	strs := func(idx ...int) []string {
		out := make([]string, len(idx))
		for i, j := range idx {
			out[i] = fmt.Sprintf("event %d", j)
		}
		return out
	}
	sliceEq(t, "all newest first", msgs(list(store.EventListParams{})), strs(9, 8, 7, 6, 5, 4, 3, 2, 1, 0))
	got := list(store.EventListParams{Limit: 1})[0]
	eq(t, "ID", got.ID, evs[9].ID)
	timeEq(t, "Time", got.Time, At(9*time.Second))
	eq(t, "Kind", got.Kind, core.EventScaleUp)
	eq(t, "Pool", got.Pool, "big")
	eq(t, "WorkerID", got.WorkerID, "w2")
	eq(t, "TaskID", got.TaskID, "t0")
	jsonEq(t, "Data", got.Data, `{"i":9}`)

	sliceEq(t, "kind", msgs(list(store.EventListParams{Kinds: []core.EventKind{core.EventScaleUp}})), strs(9, 7, 5, 3, 1))
	sliceEq(t, "kinds", msgs(list(store.EventListParams{Kinds: []core.EventKind{core.EventScaleUp, core.EventTaskClaimed}, Limit: 2})), strs(9, 8))
	sliceEq(t, "pool", msgs(list(store.EventListParams{Pool: core.DefaultPool})), strs(8, 6, 4, 2, 0))
	sliceEq(t, "worker", msgs(list(store.EventListParams{WorkerID: "w2"})), strs(9, 7, 5, 3, 1))
	sliceEq(t, "task", msgs(list(store.EventListParams{TaskID: "t1"})), strs(7, 4, 1))
	sliceEq(t, "since", msgs(list(store.EventListParams{Since: At(7 * time.Second)})), strs(9, 8, 7))
	sliceEq(t, "page", msgs(list(store.EventListParams{BeforeID: evs[5].ID, Limit: 3})), strs(4, 3, 2))
	sliceEq(t, "page filtered", msgs(list(store.EventListParams{BeforeID: evs[5].ID, WorkerID: "w1"})), strs(4, 2, 0))
}

func testLogsInsertListPaging(t *testing.T, s store.Store) {
	var lines []*core.LogLine
	for i := range 8 {
		l := &core.LogLine{Time: At(time.Duration(i) * time.Second), WorkerID: "w1", TaskID: "t1", Stream: "stdout", Line: fmt.Sprintf("line %d", i)}
		if i >= 5 {
			l.WorkerID, l.TaskID, l.Stream = "w2", "t2", "stderr"
		}
		lines = append(lines, l)
	}
	noErr(t, "LogInsertMany", s.LogInsertMany(t.Context(), lines))
	list := func(p store.LogListParams) []*core.LogLine {
		t.Helper()
		got, err := s.LogList(t.Context(), &p)
		noErr(t, "LogList", err)
		return got
	}
	texts := func(ls []*core.LogLine) []string {
		out := make([]string, len(ls))
		for i, l := range ls {
			out[i] = l.Line
		}
		return out
	}
	all := list(store.LogListParams{})
	sliceEq(t, "all oldest first", texts(all), []string{"line 0", "line 1", "line 2", "line 3", "line 4", "line 5", "line 6", "line 7"})
	eq(t, "Stream", all[6].Stream, "stderr")
	eq(t, "WorkerID", all[6].WorkerID, "w2")
	eq(t, "TaskID", all[6].TaskID, "t2")
	timeEq(t, "Time", all[6].Time, At(6*time.Second))
	if all[0].ID == 0 || all[1].ID <= all[0].ID {
		t.Fatalf("log ids not assigned in order: %d, %d", all[0].ID, all[1].ID)
	}
	sliceEq(t, "task", texts(list(store.LogListParams{TaskID: "t2"})), []string{"line 5", "line 6", "line 7"})
	sliceEq(t, "worker", texts(list(store.LogListParams{WorkerID: "w1", Limit: 2})), []string{"line 0", "line 1"})
	sliceEq(t, "after", texts(list(store.LogListParams{WorkerID: "w1", AfterID: all[1].ID, Limit: 2})), []string{"line 2", "line 3"})
	sliceEq(t, "after end", texts(list(store.LogListParams{AfterID: all[7].ID})), []string{})
}

func testPrune(t *testing.T, s store.Store, r Rules) {
	w := InsertWorker(t, s, core.DefaultPool, core.WorkerReady)
	noErr(t, "EventInsertMany", s.EventInsertMany(t.Context(), []*core.Event{
		{Time: At(0), Kind: core.EventTick, Message: "old"},
		{Time: At(2 * time.Hour), Kind: core.EventTick, Message: "new"},
	}))
	noErr(t, "LogInsertMany", s.LogInsertMany(t.Context(), []*core.LogLine{
		{Time: At(0), Stream: "stdout", Line: "old"},
		{Time: At(2 * time.Hour), Stream: "stdout", Line: "new"},
	}))
	tasks := InsertN(t, s, 4)
	c := Claim(t, s, w, At(time.Minute), 3, 0)
	Complete(t, s, w, At(time.Minute), c[0])                             // final before horizon → pruned
	Complete(t, s, w, At(2*time.Hour), c[1])                             // final after horizon → kept
	_, err := r.TaskCancel(t.Context(), s, tasks[3].ID, At(time.Minute)) // cancelled before → pruned
	noErr(t, "TaskCancel", err)
	// c[2] is running → kept.

	n, err := s.Prune(t.Context(), At(time.Hour))
	noErr(t, "Prune", err)
	eq(t, "rows deleted", n, 4)
	evs, err := s.EventList(t.Context(), &store.EventListParams{})
	noErr(t, "EventList", err)
	eq(t, "events left", len(evs), 1)
	eq(t, "event left", evs[0].Message, "new")
	logs, err := s.LogList(t.Context(), &store.LogListParams{})
	noErr(t, "LogList", err)
	eq(t, "logs left", len(logs), 1)
	eq(t, "log left", logs[0].Line, "new")
	_, err = s.TaskGet(t.Context(), c[0].ID)
	isErr(t, "TaskGet(pruned)", err, core.ErrNotFound)
	_, err = s.TaskGet(t.Context(), tasks[3].ID)
	isErr(t, "TaskGet(pruned cancelled)", err, core.ErrNotFound)
	Get(t, s, c[1].ID)
	Get(t, s, c[2].ID)
	eq(t, "total tasks", totalTasks(t, s), 2)
}

func testBreakers(t *testing.T, s store.Store) {
	got, err := s.BreakerGetAll(t.Context())
	noErr(t, "BreakerGetAll(empty)", err)
	eq(t, "breakers", len(got), 0)

	opened, until := At(time.Minute), At(11*time.Minute)
	a := &core.BreakerState{Key: "default/A100/eu", Status: core.BreakerOpen, OpenedAt: &opened, Until: &until, Trips: 2, Consecutive: 3,
		Reason: "3 boot timeouts", Outcomes: []core.BreakerOutcome{{Time: At(0), Success: false, Class: core.FailBootTimeout, Worker: "w1"}}, UpdatedAt: opened}
	b := &core.BreakerState{Key: "default/H100/us", Status: core.BreakerClosed, UpdatedAt: At(0)}
	noErr(t, "BreakerPut(a)", s.BreakerPut(t.Context(), a))
	noErr(t, "BreakerPut(b)", s.BreakerPut(t.Context(), b))
	got, err = s.BreakerGetAll(t.Context())
	noErr(t, "BreakerGetAll", err)
	eq(t, "breakers", len(got), 2)
	byKey := map[string]*core.BreakerState{}
	for _, st := range got {
		byKey[st.Key] = st
	}
	ga := byKey[a.Key]
	if ga == nil {
		t.Fatalf("breaker %s missing", a.Key)
	}
	eq(t, "Status", ga.Status, core.BreakerOpen)
	timePtrEq(t, "OpenedAt", ga.OpenedAt, opened)
	timePtrEq(t, "Until", ga.Until, until)
	eq(t, "Trips", ga.Trips, 2)
	eq(t, "Consecutive", ga.Consecutive, 3)
	eq(t, "Reason", ga.Reason, "3 boot timeouts")
	eq(t, "Outcomes", len(ga.Outcomes), 1)
	eq(t, "Outcome class", ga.Outcomes[0].Class, core.FailBootTimeout)
	timeEq(t, "UpdatedAt", ga.UpdatedAt.UTC(), opened)

	// Upsert replaces the state.
	a2 := &core.BreakerState{Key: a.Key, Status: core.BreakerHalfOpen, Trips: 2, CanaryWorker: "w9", UpdatedAt: At(12 * time.Minute)}
	noErr(t, "BreakerPut(a2)", s.BreakerPut(t.Context(), a2))
	got, err = s.BreakerGetAll(t.Context())
	noErr(t, "BreakerGetAll", err)
	eq(t, "breakers after upsert", len(got), 2)
	for _, st := range got {
		if st.Key == a.Key {
			eq(t, "Status", st.Status, core.BreakerHalfOpen)
			eq(t, "CanaryWorker", st.CanaryWorker, "w9")
			eq(t, "Outcomes cleared", len(st.Outcomes), 0)
		}
	}
}

func testLeaderElection(t *testing.T, s store.Store) {
	elect := func(id string, now time.Time) bool {
		t.Helper()
		ok, err := s.LeaderAttemptElect(t.Context(), &store.LeaderElectParams{Now: now, LeaderID: id, TTL: 15 * time.Second})
		noErr(t, "LeaderAttemptElect", err)
		return ok
	}
	eq(t, "a elected", elect("a", At(0)), true)
	eq(t, "b refused just before a's expiry", elect("b", At(14*time.Second)), false)

	eq(t, "b refused while a holds", elect("b", At(5*time.Second)), false)
	eq(t, "a re-elected", elect("a", At(10*time.Second)), true)
	eq(t, "b refused before the renewed expiry", elect("b", At(24*time.Second)), false)
	eq(t, "b refused before new expiry", elect("b", At(20*time.Second)), false)

	// a stops renewing; after expiry b takes over and a is refused.
	eq(t, "b takes over", elect("b", At(26*time.Second)), true)
	eq(t, "a refused", elect("a", At(27*time.Second)), false)

	// Resigning by a non-leader changes nothing; the leader's resignation
	// frees the lease at once.
	noErr(t, "LeaderResign(a)", s.LeaderResign(t.Context(), "a"))
	eq(t, "b still leads after a foreign resign", elect("a", At(27*time.Second)), false)
	noErr(t, "LeaderResign(b)", s.LeaderResign(t.Context(), "b"))
	eq(t, "a elected after resign", elect("a", At(28*time.Second)), true)
}

func sliceEq(t testing.TB, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s = %q, want %q", what, got, want)
		}
	}
}

// Every listing rejects a limit outside 0..max, naming the field, on every
// backend.
func testListLimits(t *testing.T, s store.Store) {
	ctx := t.Context()
	check := func(what string, err error) {
		t.Helper()
		e, ok := errors.AsType[*core.Error](err)
		if !ok || e.Code != core.EINVALID || e.Field != "limit" {
			t.Fatalf("%s: err = %v, want EINVALID naming limit", what, err)
		}
	}
	_, err := s.TaskList(ctx, &store.TaskListParams{Limit: store.MaxTaskListLimit + 1})
	check("TaskList over max", err)
	_, err = s.EventList(ctx, &store.EventListParams{Limit: -1})
	check("EventList negative", err)
	_, err = s.LogList(ctx, &store.LogListParams{Limit: store.MaxLogListLimit + 1})
	check("LogList over max", err)
	if _, err := s.TaskList(ctx, &store.TaskListParams{Limit: store.MaxTaskListLimit}); err != nil {
		t.Fatalf("TaskList at max: %v", err)
	}
}
