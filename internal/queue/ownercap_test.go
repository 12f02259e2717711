package queue

import (
	"errors"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/storetest"
)

// tasks.max_queued_per_owner: a submit (single or batch) that would take an
// owner past the cap is refused whole, naming the owner, the cap and the
// count, and changes nothing; other owners and running tasks do not count.
func TestOwnerQueueCap(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, st store.Store) {
		s := New(st, core.NewFakeClock(storetest.Base), Config{MaxQueuedPerOwner: 3}, nil)
		sub := func(owner string, n int) error {
			reqs := make([]SubmitRequest, n)
			for i := range reqs {
				reqs[i] = SubmitRequest{Type: "a", Owner: owner}
			}
			_, err := s.Submit(t.Context(), reqs)
			return err
		}
		refused := func(err error, queued, adding int) {
			t.Helper()
			full, ok := errors.AsType[*OwnerQueueFullError](err)
			if !ok {
				t.Fatalf("err = %v, want OwnerQueueFullError", err)
			}
			if full.Owner != "alice" || full.Cap != 3 || full.Queued != queued || full.Adding != adding || full.RetryAfter() <= 0 {
				t.Fatalf("refusal %+v, want alice cap 3 queued %d adding %d", full, queued, adding)
			}
			if core.ErrorCode(err) != core.EOWNERQUEUEFULL || !strings.Contains(core.ErrorMessage(err), `owner "alice"`) {
				t.Fatalf("code %s message %q", core.ErrorCode(err), core.ErrorMessage(err))
			}
		}
		if err := sub("alice", 2); err != nil {
			t.Fatal(err)
		}
		before := taskCount(t, st)
		refused(sub("alice", 2), 2, 2) // a batch is refused whole
		if n := taskCount(t, st); n != before {
			t.Fatalf("a refused batch inserted %d tasks", n-before)
		}
		if err := sub("alice", 1); err != nil { // exactly the cap
			t.Fatal(err)
		}
		refused(sub("alice", 1), 3, 1)
		if err := sub("bob", 3); err != nil { // another owner has its own cap
			t.Fatalf("bob: %v", err)
		}
		// A started task is no longer queued: room for one more.
		w := storetest.InsertWorker(t, st, core.DefaultPool, core.WorkerReady)
		for _, tk := range mustClaim(t, s, w.ID, 1) {
			if tk.Owner != "alice" {
				// Claims are FIFO within a priority: alice's went first.
				t.Fatalf("claimed %s's task", tk.Owner)
			}
		}
		if err := sub("alice", 1); err != nil {
			t.Fatalf("alice after a start: %v", err)
		}
		refused(sub("alice", 5), 3, 5) // a batch larger than the cap itself
	}
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		run(t, openSQLite(t))
	})
	t.Run("Postgres", func(t *testing.T) {
		t.Parallel()
		pgtest.URL(t)
		run(t, pgtest.Open(t, 4))
	})
}

// Without a cap, submitting never counts the queue.
func TestOwnerQueueCapOffCostsNothing(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{})
	if err := s.checkOwnerCap(t.Context(), []*core.Task{{Owner: "alice"}}); err != nil {
		t.Fatal(err)
	}
}
