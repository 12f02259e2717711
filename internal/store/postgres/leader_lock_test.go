package postgres_test

import (
	"testing"
	"time"

	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/jackc/pgx/v5"
)

// A replica that wins the leader row while another session holds the
// advisory lock for the instant of its own attempt (replicas starting
// together, or a follower's attempt colliding with a renewal) retries the
// lock at once and marks the row locked: when it dies, a follower takes
// over at its next attempt instead of waiting for the row's TTL.
func TestLeaderWithoutLockRetriesAtOnce(t *testing.T) {
	base := pgtest.URL(t)
	schema := pgtest.NewSchema(t, base)
	u := pgtest.WithParams(t, base, map[string]string{"search_path": schema, "pool_max_conns": "4"})
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
	a, c := open(), open()
	ctx := t.Context()
	// Another replica's session holds the free lock, as a follower does
	// between taking it and losing the row.
	holder, err := pgx.Connect(ctx, pgtest.WithParams(t, base, map[string]string{"search_path": schema}))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended('drover.leader.' || current_schema(), 0))`); err != nil {
		t.Fatal(err)
	}
	released := false
	postgres.SetLeaderLockRetryHook(func(int) {
		if !released {
			released = true
			if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended('drover.leader.' || current_schema(), 0))`); err != nil {
				t.Errorf("release the other session's lock: %v", err)
			}
		}
	})
	defer postgres.SetLeaderLockRetryHook(nil)
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
	if !released {
		t.Fatal("a won the row without the lock but did not retry it at once")
	}
	if elect(c, "c", time.Second) {
		t.Fatal("c elected while a leads with a fresh row")
	}
	if err := a.Close(); err != nil { // a dies before its next renewal
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !elect(c, "c", 2*time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("c not elected after a's session ended: a led without the lock (row still 13 s from expiry)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	l, err := c.LeaderGet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.LeaderID != "c" || l.Term != 2 {
		t.Fatalf("leader = %s term %d, want c term 2", l.LeaderID, l.Term)
	}
}
