package orchestrator

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/sqlite"
)

// leaderStores returns SQLite always and PostgreSQL when
// DROVER_TEST_DATABASE_URL is set.
func leaderStores(t *testing.T) map[string]func(t *testing.T) store.Store {
	out := map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store {
			st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "leader.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			if _, err := st.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
			return st
		},
	}
	if os.Getenv(pgtest.EnvURL) != "" || os.Getenv("CI") == "true" {
		out["postgres"] = func(t *testing.T) store.Store { return pgtest.Open(t, 0) }
	} else {
		t.Log("DROVER_TEST_DATABASE_URL not set: leader election tested on SQLite only")
	}
	return out
}

func TestElector(t *testing.T) {
	for name, open := range leaderStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			st := open(t)
			clock := core.NewFakeClock(t0)
			cfg := ElectorConfig{TTL: 15 * time.Second, Interval: 5 * time.Second, SafetyMargin: 3 * time.Second}
			cfgA, cfgB := cfg, cfg
			cfgA.ID, cfgB.ID = "replica-a", "replica-b"
			a := NewElector(st, clock, cfgA, nil)
			b := NewElector(st, clock, cfgB, nil)

			attempt := func(e *Elector, want bool) {
				t.Helper()
				got, err := e.Attempt(ctx)
				if err != nil {
					t.Fatalf("%s attempt: %v", e.ID(), err)
				}
				if got != want {
					t.Fatalf("at +%s: %s elected = %v, want %v", clock.Now().Sub(t0), e.ID(), got, want)
				}
			}

			// Elect.
			attempt(a, true)
			eq(t, "a trusted until", a.TrustedUntil(), t0.Add(12*time.Second))
			attempt(b, false)
			eq(t, "b leader", b.IsLeader(), false)
			// The row holds a's term until +15s: another candidate is
			// refused just before it expires.
			held, err := st.LeaderAttemptElect(ctx, &store.LeaderElectParams{Now: t0.Add(15*time.Second - time.Microsecond), LeaderID: "probe", TTL: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "probe elected while a holds the row", held, false)

			// Re-elect extends the term.
			clock.Advance(5 * time.Second)
			attempt(a, true)
			eq(t, "a trusted until after re-elect", a.TrustedUntil(), t0.Add(17*time.Second))

			// a stops renewing: it distrusts itself before the row expires,
			// and b cannot take over until the row has expired.
			clock.Advance(12 * time.Second) // +17s
			eq(t, "a leader after its trust window", a.IsLeader(), false)
			attempt(b, false)              // row valid until +20s
			clock.Advance(4 * time.Second) // +21s
			attempt(b, true)               // takeover after expiry
			eq(t, "b leader", b.IsLeader(), true)
			attempt(a, false)

			// Resign lets the other replica in at once.
			if err := b.Resign(ctx); err != nil {
				t.Fatal(err)
			}
			eq(t, "b leader after resign", b.IsLeader(), false)
			attempt(a, true)
			// A stale resign by b does not remove a's term.
			if err := b.Resign(ctx); err != nil {
				t.Fatal(err)
			}
			attempt(b, false) // a's term is still in the row
			attempt(a, true)  // and a re-elects into it
		})
	}
}

// Run ticks while leader, wakes at once on Wake and stops cleanly; it is
// tested in a synctest bubble, so no real time passes.
func TestRunWakesAndStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		ticks := make(chan *TickReport, 100)
		o, err := New(Deps{Store: h.st, Queue: h.q, Providers: h.o.providers, Clock: h.clock, Config: h.cfg,
			Logger: slog.New(slog.DiscardHandler), AfterTick: func(r *TickReport) { ticks <- r }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(h.ctx)
		done := make(chan error, 1)
		go func() { done <- o.Run(ctx) }()
		synctest.Wait()
		// The first tick runs at once as leader (and once more for the
		// elector's "elected" wake-up); nothing to do yet.
		for len(ticks) > 0 {
			eq(t, "spawns before any task", len((<-ticks).Spawned), 0)
		}

		// A submit wakes the loop through the queue's waker, long before
		// the 2 s ticker.
		h.submit(1, "", params(time.Minute, "succeed"))
		synctest.Wait()
		select {
		case r := <-ticks:
			eq(t, "spawned after the wake-up", len(r.Spawned), 1)
		default:
			t.Fatal("submit did not wake the loop")
		}
		cancel()
		synctest.Wait()
		if err := <-done; err != nil {
			t.Fatalf("run: %v", err)
		}
	})
}
