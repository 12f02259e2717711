package orchestrator

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// fleetReload is how often the leader reloads its copy of the fleet in
// full although nothing made it uncertain: a safety net against a write
// it did not see (the orchestrator is the only writer of worker state,
// DESIGN.md §2, so none is expected). One full read costs about one tick
// of the old design every five minutes; the median tick does not move.
const fleetReload = 5 * time.Minute

// fleet is the leader's in-memory copy of the live worker rows, oldest
// first. The orchestrator is the only writer of worker state, so the copy
// follows its own writes (spawn inserts rows, update and setState change
// them in place) and reads each tick only what others write: heartbeats
// and completions (the queue) and the running lease counts, through
// store.WorkerActivity. That read also checks the copy: a live row it does
// not know, a known row no longer live, or a state it did not write means
// someone else wrote a worker row, and the copy is reloaded in full.
//
// The copy is dropped (and read again in full by the next tick) when a
// tick fails or a worker write conflicts, since the row may then differ
// from the copy; when leadership changes (a new leader must not trust what
// it knew as a follower or in an earlier term); and every fleetReload.
// Only the tick uses it, under Orchestrator.mu.
type fleet struct {
	workers []*core.Worker
	byID    map[uuid.UUID]*core.Worker
	// valid is false until loaded and after anything made it uncertain.
	valid bool
	// term is the leadership term the copy was loaded in (0 without one).
	term int64
	// loadedAt is the tick time of the last full load.
	loadedAt time.Time
	// unsorted is set when a spawned row was appended out of order.
	unsorted bool
}

// invalidate drops the copy: the next tick reads the fleet in full.
func (f *fleet) invalidate() { f.valid = false }

// load replaces the copy with ws (live rows, oldest first).
func (f *fleet) load(ws []*core.Worker, term int64, now time.Time) {
	f.workers = ws
	f.byID = make(map[uuid.UUID]*core.Worker, len(ws))
	for _, w := range ws {
		f.byID[w.ID] = w
	}
	f.valid, f.term, f.loadedAt, f.unsorted = true, term, now, false
}

// add records a row the tick inserted.
func (f *fleet) add(w *core.Worker) {
	if !f.valid {
		return
	}
	if n := len(f.workers); n > 0 && workerOrder(f.workers[n-1], w) > 0 {
		f.unsorted = true
	}
	f.workers = append(f.workers, w)
	f.byID[w.ID] = w
}

// apply brings the copy up to date with acts. It returns false, leaving
// the copy to be reloaded, when acts and the copy disagree on which rows
// are live or on a state.
func (f *fleet) apply(acts []store.WorkerActivity) bool {
	if len(acts) != len(f.workers) {
		return false
	}
	for i := range acts {
		a := &acts[i]
		w, ok := f.byID[a.ID]
		if !ok || w.State != a.State {
			return false
		}
		w.LastHeartbeatAt = refreshTime(w.LastHeartbeatAt, a.LastHeartbeatAt)
		w.LastTaskAt = refreshTime(w.LastTaskAt, a.LastTaskAt)
		w.TasksDone = a.TasksDone
		w.Running = a.Running
	}
	return true
}

// refreshTime returns cur when it already holds v (zero v: nil), else a
// new pointer to v.
func refreshTime(cur *time.Time, v time.Time) *time.Time {
	switch {
	case v.IsZero():
		return nil
	case cur != nil && cur.Equal(v):
		return cur
	}
	return &v
}

// list returns the live rows, oldest first, for one tick. The slice is
// the tick's own (rows added meanwhile are not in it); the rows are
// shared with the copy, so the tick's writes land in it.
func (f *fleet) list() []*core.Worker {
	if f.unsorted {
		slices.SortStableFunc(f.workers, workerOrder)
		f.unsorted = false
	}
	return f.workers[:len(f.workers):len(f.workers)]
}

// prune drops the rows that are no longer live. It reuses the slice, so
// it runs only between ticks (at the start of the next one).
func (f *fleet) prune() {
	if !f.valid {
		return
	}
	f.workers = slices.DeleteFunc(f.workers, func(w *core.Worker) bool {
		if liveRow(w) {
			return false
		}
		delete(f.byID, w.ID)
		return true
	})
}

// liveRow reports whether store.WorkerListParams.LiveOnly selects w.
func liveRow(w *core.Worker) bool {
	return w.State.Live() || w.State == core.WorkerTerminating || (w.State == core.WorkerFailed && w.TerminatedAt == nil)
}

// workerOrder is the order of WorkerList: oldest first, then by id.
func workerOrder(a, b *core.Worker) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

// readFleet fills t.workers: from the copy refreshed by one narrow read,
// or from a full read when the copy is missing, old or disagrees with the
// database.
func (o *Orchestrator) readFleet(ctx context.Context, t *tick) error {
	f := &o.fleet
	term := o.elector.Row().Term
	stale := o.fleetStale.Swap(false)
	if f.valid && !stale && f.term == term && t.now.Sub(f.loadedAt) < fleetReload {
		// The last tick is over: its rows that left the live set go.
		f.prune()
		acts, err := o.st.WorkerActivity(ctx)
		if err != nil {
			f.invalidate()
			return fmt.Errorf("tick: read worker activity: %w", err)
		}
		if f.apply(acts) {
			t.workers = f.list()
			return nil
		}
		o.log.Warn("worker rows changed outside the orchestrator; reloading the fleet", "rows", len(acts), "known", len(f.workers))
		f.invalidate()
	}
	ws, err := o.st.WorkerList(ctx, &store.WorkerListParams{LiveOnly: true, Brief: true})
	if err != nil {
		f.invalidate()
		return fmt.Errorf("tick: list workers: %w", err)
	}
	f.load(ws, term, t.now)
	t.workers = f.list()
	return nil
}
