package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/storetest"
)

// twoReplicas opens two stores (two sessions, as two processes would) on
// one fresh schema.
func twoReplicas(t *testing.T) (a, b *postgres.Store) {
	t.Helper()
	base := pgtest.URL(t)
	u := pgtest.WithParams(t, base, map[string]string{"search_path": pgtest.NewSchema(t, base), "pool_max_conns": "4"})
	open := func() *postgres.Store {
		s, err := postgres.Open(t.Context(), u)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		if _, err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		return s
	}
	return open(), open()
}

// A leader whose session ends (its process died) is replaced at the next
// attempt, long before its row expires, and in a new term.
func TestLeaderSessionEndFailsOverAtOnce(t *testing.T) {
	a, b := twoReplicas(t)
	ctx := t.Context()
	t0 := storetest.Base
	elect := func(s *postgres.Store, id string, at time.Duration) bool {
		t.Helper()
		ok, err := s.LeaderAttemptElect(ctx, &store.LeaderElectParams{Now: t0.Add(at), LeaderID: id, TTL: 15 * time.Second})
		if err != nil {
			t.Fatalf("elect %s: %v", id, err)
		}
		return ok
	}
	if !elect(a, "a", 0) {
		t.Fatal("a not elected on an empty table")
	}
	if elect(b, "b", time.Second) {
		t.Fatal("b elected while a's session holds the lock and the row is fresh")
	}
	if err := a.Close(); err != nil { // the session ends, as when the process is killed
		t.Fatal(err)
	}
	// The server ends a's backend asynchronously after the connection
	// closes: poll (with a real deadline) while the row's time stands still.
	deadline := time.Now().Add(5 * time.Second)
	for !elect(b, "b", 2*time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("b not elected after a's session ended (row still 13 s from expiry)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	l, err := b.LeaderGet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.LeaderID != "b" || l.Term != 2 {
		t.Fatalf("leader = %s term %d, want b term 2", l.LeaderID, l.Term)
	}
}

// A paused leader keeps its session, so the others wait for its row to
// expire; after the takeover, every leader-only write the old leader makes
// under its term is rejected and changes nothing.
func TestLeaderPausedIsFenced(t *testing.T) {
	a, b := twoReplicas(t)
	ctx := t.Context()
	t0 := storetest.Base
	elect := func(s *postgres.Store, id string, at time.Duration) bool {
		t.Helper()
		ok, err := s.LeaderAttemptElect(ctx, &store.LeaderElectParams{Now: t0.Add(at), LeaderID: id, TTL: 15 * time.Second})
		if err != nil {
			t.Fatalf("elect %s: %v", id, err)
		}
		return ok
	}
	if !elect(a, "a", 0) {
		t.Fatal("a not elected")
	}
	if elect(b, "b", 10*time.Second) {
		t.Fatal("b elected before a's row expired while a's session lives")
	}
	if !elect(b, "b", 16*time.Second) {
		t.Fatal("b not elected after a's row expired")
	}
	old := store.WithFence(ctx, store.Fence{LeaderID: "a", Term: 1})
	w := storetest.NewWorker("gpu", core.WorkerRequested)
	if err := a.WorkerInsert(old, w); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("WorkerInsert under a's old term: err = %v, want ErrFenced", err)
	}
	if _, err := a.WorkerGet(ctx, w.ID); !errors.Is(err, core.ErrNotFound) {
		t.Fatalf("fenced insert left a row: err = %v", err)
	}
	cur := store.WithFence(ctx, store.Fence{LeaderID: "b", Term: 2})
	if err := b.WorkerInsert(cur, w); err != nil {
		t.Fatalf("WorkerInsert under b's term: %v", err)
	}
	st := core.WorkerFailed
	if _, err := a.WorkerUpdate(old, &store.WorkerUpdateParams{Now: t0, ID: w.ID, State: &st}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("WorkerUpdate under a's old term: err = %v, want ErrFenced", err)
	}
	if err := a.BreakerPut(old, &core.BreakerState{Key: "gpu", UpdatedAt: t0}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("BreakerPut under a's old term: err = %v, want ErrFenced", err)
	}
	// a resumes: its next attempt finds the row taken and gives the lock
	// up, so b can hold it from its next renewal on.
	if elect(a, "a", 17*time.Second) {
		t.Fatal("a re-elected while b leads")
	}
	if !elect(b, "b", 18*time.Second) {
		t.Fatal("b lost leadership")
	}
}

// A leader paused in the middle of a fenced write (SIGSTOP, a frozen VM)
// holds the leader row FOR SHARE. Its session is ended by PostgreSQL after
// idle_in_transaction_session_timeout (postgres.IdleInTransactionTimeout by
// default; 1 s here), so once the row has expired a follower takes over
// instead of waiting on the lock until the paused process wakes up.
func TestPausedLeaderInsideFencedWriteIsReplaced(t *testing.T) {
	base := pgtest.URL(t)
	schema := pgtest.NewSchema(t, base)
	open := func(params map[string]string) *postgres.Store {
		params["search_path"] = schema
		params["pool_max_conns"] = "4"
		s, err := postgres.Open(t.Context(), pgtest.WithParams(t, base, params))
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		if _, err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		return s
	}
	a := open(map[string]string{"idle_in_transaction_session_timeout": "1s"})
	b := open(map[string]string{})
	ctx := t.Context()
	t0 := storetest.Base
	if ok, err := a.LeaderAttemptElect(ctx, &store.LeaderElectParams{Now: t0, LeaderID: "a", TTL: 15 * time.Second}); err != nil || !ok {
		t.Fatalf("elect a = %v, %v", ok, err)
	}
	l, err := a.LeaderGet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	paused := make(chan error, 1)
	go func() {
		paused <- a.Tx(store.WithFence(ctx, store.Fence{LeaderID: "a", Term: l.Term}), func(context.Context, store.Tx) error {
			close(inside)
			<-release // the process is stopped here, its transaction open
			return nil
		})
	}()
	<-inside
	// The row expired 5 s ago; without the timeout this attempt would wait
	// on a's row lock for as long as a stays paused.
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ok, err := b.LeaderAttemptElect(ectx, &store.LeaderElectParams{Now: t0.Add(20 * time.Second), LeaderID: "b", TTL: 15 * time.Second})
	if err != nil || !ok {
		t.Fatalf("elect b while a is paused inside a fenced write = %v, %v", ok, err)
	}
	close(release)
	if err := <-paused; err == nil {
		t.Error("the paused leader's transaction committed after its session was ended")
	}
	if l, err := b.LeaderGet(ctx); err != nil || l.LeaderID != "b" || l.Term != 2 {
		t.Fatalf("leader = %+v, %v; want b in term 2", l, err)
	}
}
