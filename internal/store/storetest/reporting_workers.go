package storetest

import (
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// testWorkerGroupsAndAttention checks the aggregate worker reads of
// status: counts per pool, state, failure and staleness; the table's rows
// (problem workers first, oldest first); and the start-ups by ready_at.
func testWorkerGroupsAndAttention(t *testing.T, s store.Store) {
	ctx := t.Context()
	mk := func(pool string, state core.WorkerState, created time.Duration) *core.Worker {
		w := NewWorker(pool, state)
		w.CreatedAt = At(created)
		w.StateChangedAt = w.CreatedAt
		noErr(t, "WorkerInsert", s.WorkerInsert(ctx, w))
		return w
	}
	upd := func(w *core.Worker, p store.WorkerUpdateParams) {
		p.ID, p.Now = w.ID, At(10*time.Minute)
		_, err := s.WorkerUpdate(ctx, &p)
		noErr(t, "WorkerUpdate", err)
	}
	healthy := mk("gpu", core.WorkerReady, 0)
	upd(healthy, store.WorkerUpdateParams{ReadyAt: ptrTo(At(time.Minute)), LastHeartbeat: ptrTo(At(10 * time.Minute))})
	stale := mk("gpu", core.WorkerReady, time.Second)
	upd(stale, store.WorkerUpdateParams{ReadyAt: ptrTo(At(2 * time.Minute)), LastHeartbeat: ptrTo(At(5 * time.Minute))})
	booting := mk("gpu", core.WorkerBooting, 2*time.Second)
	failing := mk("cpu", core.WorkerTerminating, 3*time.Second)
	upd(failing, store.WorkerUpdateParams{Failure: ptrTo(core.FailBootTimeout)})
	gone := mk("gpu", core.WorkerTerminated, 4*time.Second)
	upd(gone, store.WorkerUpdateParams{ReadyAt: ptrTo(At(3 * time.Minute)), TerminatedAt: ptrTo(At(6 * time.Minute))})
	healthy2 := mk("cpu", core.WorkerReady, 5*time.Second)
	upd(healthy2, store.WorkerUpdateParams{ReadyAt: ptrTo(At(4 * time.Minute)), LastHeartbeat: ptrTo(At(9 * time.Minute))})

	staleBefore := At(9 * time.Minute)
	groups, err := s.WorkerGroups(ctx, staleBefore)
	noErr(t, "WorkerGroups", err)
	type key struct {
		pool          string
		state         core.WorkerState
		failed, stale bool
		count         int
		price         float64
		ready         time.Time
	}
	var got []key
	for _, g := range groups {
		k := key{g.Pool, g.State, g.Failed, g.Stale, g.Count, g.PricePerHour, time.Time{}}
		if g.LastReadyAt != nil {
			k.ready = *g.LastReadyAt
		}
		got = append(got, k)
	}
	want := []key{
		{"cpu", core.WorkerReady, false, false, 1, 1.25, At(4 * time.Minute)},
		{"cpu", core.WorkerTerminating, true, false, 1, 1.25, time.Time{}},
		{"gpu", core.WorkerBooting, false, false, 1, 1.25, time.Time{}},
		{"gpu", core.WorkerReady, false, false, 1, 1.25, At(time.Minute)},
		{"gpu", core.WorkerReady, false, true, 1, 1.25, At(2 * time.Minute)},
	}
	eq(t, "groups", len(got), len(want))
	for i := range want {
		eq(t, "group", got[i], want[i])
	}

	ids, err := s.WorkerAttentionIDs(ctx, staleBefore, 3)
	noErr(t, "WorkerAttentionIDs(3)", err)
	eq(t, "attention ids (3)", idsString(ids), idsString([]uuid.UUID{stale.ID, booting.ID, failing.ID}))
	ids, err = s.WorkerAttentionIDs(ctx, staleBefore, 10)
	noErr(t, "WorkerAttentionIDs(10)", err)
	eq(t, "attention ids (10)", idsString(ids), idsString([]uuid.UUID{stale.ID, booting.ID, failing.ID, healthy.ID, healthy2.ID}))

	starts, err := s.WorkerStarts(ctx, At(90*time.Second), At(time.Hour), 10)
	noErr(t, "WorkerStarts", err)
	eq(t, "starts", len(starts), 3)
	eq(t, "latest start", *starts[0], store.WorkerStart{Placement: healthy2.Placement, CreatedAt: At(5 * time.Second), ReadyAt: At(4 * time.Minute)})
	eq(t, "terminated worker's start", starts[1].ReadyAt, At(3*time.Minute))
	eq(t, "earliest start in range", starts[2].ReadyAt, At(2*time.Minute))
	two, err := s.WorkerStarts(ctx, At(0), At(time.Hour), 2)
	noErr(t, "WorkerStarts(limit 2)", err)
	eq(t, "starts (limit 2)", len(two), 2)
}

func idsString(ids []uuid.UUID) string {
	s := ""
	for _, id := range ids {
		s += id.String() + " "
	}
	return s
}
