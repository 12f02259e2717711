package dashboard_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/dashboard"
	"github.com/droverhq/drover/internal/status"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/google/uuid"
)

// benchScale reads DROVER_BENCH_OVERVIEW="workers,tasks,events" (default
// a small "1000,20000,20000"; the figure of docs/benchmarks.md is
// "10000,1000000,1000000").
func benchScale(b *testing.B) (workers, tasks, events int) {
	spec := os.Getenv("DROVER_BENCH_OVERVIEW")
	if spec == "" {
		spec = "1000,20000,20000"
	}
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		b.Fatalf("DROVER_BENCH_OVERVIEW=%q: want workers,tasks,events", spec)
	}
	n := make([]int, 3)
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 0 {
			b.Fatalf("DROVER_BENCH_OVERVIEW=%q: %q is not a count", spec, p)
		}
		n[i] = v
	}
	return n[0], n[1], n[2]
}

// BenchmarkOverview measures GET / (the status report, the chart series and
// the rendering) over a large fleet, on SQLite and, when
// DROVER_TEST_DATABASE_URL is set, PostgreSQL. It reports the p50 and p95
// of one page, and the p50 of its two reads (status.Build, status.Series),
// in ms. DROVER_BENCH_DB names a SQLite file to keep the loaded fleet in,
// DROVER_BENCH_PG a PostgreSQL database URL (instead of a fresh schema of
// DROVER_TEST_DATABASE_URL): one that already holds tasks is measured as
// it is, so the full-size load (minutes) is done once.
//
//	DROVER_BENCH_OVERVIEW=10000,1000000,1000000 go test -run '^$' -bench Overview -benchtime 20x ./internal/dashboard
func BenchmarkOverview(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		path := os.Getenv("DROVER_BENCH_DB")
		if path == "" {
			path = filepath.Join(b.TempDir(), "drover.db")
		}
		st, err := sqlite.Open(b.Context(), path)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		if _, err := st.Migrate(b.Context()); err != nil {
			b.Fatal(err)
		}
		benchOverview(b, st)
	})
	if os.Getenv(pgtest.EnvURL) != "" || os.Getenv("DROVER_BENCH_PG") != "" {
		b.Run("postgres", func(b *testing.B) {
			url := os.Getenv("DROVER_BENCH_PG")
			if url == "" {
				benchOverview(b, pgtest.Open(b, 8))
				return
			}
			st, err := postgres.Open(b.Context(), url)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if _, err := st.Migrate(b.Context()); err != nil {
				b.Fatal(err)
			}
			benchOverview(b, st)
		})
	}
}

func benchOverview(b *testing.B, st store.Store) {
	ctx := b.Context()
	nw, nt, ne := benchScale(b)
	now := time.Date(2026, 10, 15, 19, 20, 0, 0, time.UTC)
	clock := core.NewFakeClock(now)
	cfg := config.Default()
	cfg.Pools = map[string]*config.PoolConfig{}
	for i := range 10 {
		cfg.Pools[fmt.Sprintf("pool%d", i)] = &config.PoolConfig{Provider: "sim", Max: nw,
			Candidates: []config.CandidateConfig{{GPU: "RTX4090", Regions: []string{"EU-RO-1", "US-TX-3"}}}}
	}
	start := time.Now()
	if existing, err := st.TaskList(ctx, &store.TaskListParams{Limit: 1}); err != nil {
		b.Fatal(err)
	} else if len(existing) == 0 {
		preloadOverview(b, st, now, nw, nt, ne)
		b.Logf("%s: loaded %d workers, %d tasks, %d events in %s", st.Backend(), nw, nt, ne, time.Since(start).Round(time.Millisecond))
	}
	measureOverview(b, st, clock, cfg)
}

// preloadOverview loads nw workers (1 in 20 booting, the rest ready), nt
// tasks (a quarter succeeded over the last day through claims and
// completions, the rest queued), ne events over the last day and a day of
// samples.
func preloadOverview(b *testing.B, st store.Store, now time.Time, nw, nt, ne int) {
	ctx := b.Context()
	var ready []*core.Worker
	// Workers: mostly ready and heartbeating, some booting.
	for i := range nw {
		pool := fmt.Sprintf("pool%d", i%10)
		created := now.Add(-time.Duration(i%3600) * time.Second)
		w := &core.Worker{ID: uuid.New(), Pool: pool, Provider: "sim", Placement: pool + "/RTX4090/EU-RO-1", GPUType: "RTX4090",
			Region: "EU-RO-1", State: core.WorkerReady, Concurrency: 1, PricePerHour: 0.69, CreatedAt: created, StateChangedAt: created}
		if i%20 == 0 {
			w.State = core.WorkerBooting
		} else {
			hb := now.Add(-time.Duration(i%5) * time.Second)
			w.LastHeartbeatAt, w.ReadyAt = &hb, &created
		}
		if err := st.WorkerInsert(ctx, w); err != nil {
			b.Fatal(err)
		}
		if w.State == core.WorkerReady {
			ready = append(ready, w)
		}
	}
	// Tasks, queued, across pools and owners.
	for done := 0; done < nt; {
		n := min(1000, nt-done)
		batch := make([]*core.Task, n)
		for i := range batch {
			k := done + i
			created := now.Add(-time.Duration(nt-k) * time.Millisecond)
			batch[i] = &core.Task{ID: uuid.New(), Type: "render", Params: []byte(`{"frame":1}`), Owner: fmt.Sprintf("owner%d", k%50),
				Pool: fmt.Sprintf("pool%d", k%10), MaxAttempts: 3, MaxLost: 3, Timeout: time.Hour, State: core.TaskQueued,
				CreatedAt: created, RunAfter: created, UpdatedAt: created}
		}
		if _, err := st.TaskInsertMany(ctx, &store.TaskInsertManyParams{Now: now, Tasks: batch}); err != nil {
			b.Fatal(err)
		}
		// A quarter of each batch succeeds, by one ready worker.
		if len(ready) > 0 {
			w := ready[(done/1000)%len(ready)]
			// In floating point: time.Duration(done)*24h overflows int64
			// beyond about 100,000 tasks.
			at := now.Add(-24*time.Hour + time.Duration(float64(24*time.Hour)*float64(done)/float64(max(nt, 1))))
			claimed, err := st.TaskClaim(ctx, []*store.TaskClaimParams{{Now: at, WorkerID: w.ID, Pool: w.Pool, Max: n / 4, LeaseDuration: time.Hour}})
			if err != nil {
				b.Fatal(err)
			}
			got := claimed[0]
			items := make([]store.TaskCompletion, len(got))
			for i, t := range got {
				items[i] = store.TaskCompletion{Lease: core.Lease{TaskID: t.ID, Token: *t.LeaseToken}, Result: []byte(`{}`)}
			}
			if _, err := st.TaskComplete(ctx, []*store.TaskCompleteParams{{Now: at.Add(time.Minute), WorkerID: w.ID, Items: items}}); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
	// Events over the last day.
	for done := 0; done < ne; {
		n := min(5000, ne-done)
		batch := make([]*core.Event, n)
		for i := range batch {
			k := done + i
			batch[i] = &core.Event{Time: now.Add(-time.Duration(ne-k) * 80 * time.Millisecond), Kind: core.EventTaskClaimed,
				Pool: fmt.Sprintf("pool%d", k%10), Message: "task claimed"}
		}
		if err := st.EventInsertMany(ctx, batch); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	// A day of samples, one a minute.
	var samples []*store.Sample
	for i := range 24 * 60 {
		at := now.Add(-time.Duration(i) * time.Minute)
		samples = append(samples, &store.Sample{Time: at, Pool: store.SampleFleetPool, Queued: nt, Running: 0, Ready: nw * 19 / 20,
			Booting: nw / 20, Succeeded: i % 40, SpendPerHour: 0.69 * float64(nw)})
	}
	if err := st.SampleInsertMany(ctx, samples); err != nil {
		b.Fatal(err)
	}
	if va, ok := st.(interface{ VacuumAnalyze(context.Context) error }); ok {
		if err := va.VacuumAnalyze(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func measureOverview(b *testing.B, st store.Store, clock core.Clock, cfg *config.Config) {
	ctx := b.Context()
	now := clock.Now()
	var builds, series []time.Duration
	for range 5 {
		t0 := time.Now()
		if _, err := status.Build(ctx, st, cfg, now); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := status.Series(ctx, st, now.Add(-24*time.Hour), now); err != nil {
			b.Fatal(err)
		}
		builds, series = append(builds, t1.Sub(t0)), append(series, time.Since(t1))
	}
	slices.Sort(builds)
	slices.Sort(series)

	const token = "bench-operator-token"
	h, err := dashboard.New(dashboard.Config{Store: st, Clock: clock, Fleet: cfg, OperatorToken: token, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	cookie := loginCookie(b, h, token)
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		t0 := time.Now()
		h.ServeHTTP(rec, req)
		lat = append(lat, time.Since(t0))
		if rec.Code != http.StatusOK {
			b.Fatalf("GET /: %d\n%s", rec.Code, rec.Body.String())
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*95/100])/1e6, "p95-ms")
	b.ReportMetric(float64(builds[len(builds)/2])/1e6, "status-build-p50-ms")
	b.ReportMetric(float64(series[len(series)/2])/1e6, "series-24h-p50-ms")
}

// loginCookie logs in through the handler and returns the session cookie.
func loginCookie(b *testing.B, h http.Handler, token string) *http.Cookie {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/login", nil))
	var pre *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == "drover_login" {
			pre = c
		}
	}
	m := csrfRe.FindStringSubmatch(rec.Body.String())
	if pre == nil || m == nil {
		b.Fatal("login page without a pre-login cookie or CSRF token")
	}
	req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader("csrf="+m[1]+"&token="+token))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(pre)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == "drover_session" && c.Value != "" {
			return c
		}
	}
	b.Fatalf("login failed: %d", rec.Code)
	return nil
}
