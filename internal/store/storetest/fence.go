package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// testLeaderTerms checks that every change of holder starts a new term,
// that terms only grow (a resignation keeps the term), and that a Tx made
// under a fence of a term that is over writes nothing.
func testLeaderTerms(t *testing.T, s store.Store) {
	lr, ok := s.(store.LeaderReader)
	if !ok {
		t.Fatalf("%s store does not implement store.LeaderReader", s.Backend())
	}
	ctx := t.Context()
	elect := func(id string, now time.Time) bool {
		t.Helper()
		ok, err := s.LeaderAttemptElect(ctx, &store.LeaderElectParams{Now: now, LeaderID: id, TTL: 15 * time.Second})
		noErr(t, "LeaderAttemptElect", err)
		return ok
	}
	term := func() (string, int64) {
		t.Helper()
		l, err := lr.LeaderGet(ctx)
		noErr(t, "LeaderGet", err)
		return l.LeaderID, l.Term
	}
	if _, err := lr.LeaderGet(ctx); !errors.Is(err, core.ErrNotFound) {
		t.Fatalf("LeaderGet before any election: err = %v, want ErrNotFound", err)
	}
	eq(t, "a elected", elect("a", At(0)), true)
	id, t1 := term()
	eq(t, "holder", id, "a")
	eq(t, "a re-elected", elect("a", At(5*time.Second)), true)
	_, same := term()
	eq(t, "term kept on renewal", same, t1)
	eq(t, "b takes over after expiry", elect("b", At(30*time.Second)), true)
	id, t2 := term()
	eq(t, "holder", id, "b")
	l, err := lr.LeaderGet(ctx)
	noErr(t, "LeaderGet", err)
	eq(t, "previous", l.PreviousID, "a")
	eq(t, "cause", l.Cause, "takeover")
	eq(t, "term after takeover", t2, t1+1)

	// a's term is over: a fenced transaction writes nothing.
	var got *core.Task
	task := InsertTasks(t, s, NewTask())[0]
	write := func(f store.Fence) error {
		return s.Tx(store.WithFence(ctx, f), func(ctx context.Context, tx store.Tx) error {
			ts, err := tx.TaskLock(ctx, &store.TaskLockParams{IDs: []uuid.UUID{task.ID}})
			if err != nil {
				return err
			}
			ts[0].Progress = new(float64)
			*ts[0].Progress = 0.5
			return tx.TaskUpdateMany(ctx, ts)
		})
	}
	if err := write(store.Fence{LeaderID: "a", Term: t1}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("Tx under a's old term: err = %v, want ErrFenced", err)
	}
	got, err = s.TaskGet(ctx, task.ID)
	noErr(t, "TaskGet", err)
	if got.Progress != nil {
		t.Fatalf("fenced Tx wrote progress %v", *got.Progress)
	}
	noErr(t, "Tx under b's term", write(store.Fence{LeaderID: "b", Term: t2}))

	noErr(t, "LeaderResign(b)", s.LeaderResign(ctx, "b"))
	eq(t, "a elected after b resigned", elect("a", At(31*time.Second)), true)
	_, t3 := term()
	eq(t, "term after resign and election", t3, t2+1)
	l, err = lr.LeaderGet(ctx)
	noErr(t, "LeaderGet", err)
	eq(t, "cause after resign", l.Cause, "resign")
	if err := write(store.Fence{LeaderID: "b", Term: t2}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("Tx under b's resigned term: err = %v, want ErrFenced", err)
	}
}
