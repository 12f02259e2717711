package server_test

import (
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/droverhq/drover/internal/server"
	"github.com/droverhq/drover/internal/status"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const opToken = "op-token-for-tests"

func newServer(t *testing.T) (*server.Server, *client.Client, *core.FakeClock) {
	t.Helper()
	clock := core.NewFakeClock(time.Date(2025, 10, 15, 19, 0, 0, 0, time.UTC))
	cfg := config.Default()
	cfg.Database = "sqlite://" + filepath.Join(t.TempDir(), "drover.db")
	cfg.Auth.OperatorToken = opToken
	cfg.Pools = map[string]*config.PoolConfig{"default": {Provider: "sim", Max: 2,
		Candidates: []config.CandidateConfig{{GPU: "RTX4090", Regions: []string{"EU-RO-1"}}}}}
	ln := httptest.NewUnstartedServer(nil).Listener
	s, err := server.New(t.Context(), cfg, server.Options{Listener: ln, Clock: clock, Logger: slog.New(slog.DiscardHandler),
		Providers: map[string]provider.Provider{"sim": sim.New(clock, sim.Options{})}})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	hs := httptest.NewServer(s.API.Handler())
	t.Cleanup(func() {
		hs.Close()
		s.API.Close()
		_ = s.Store.Close()
		_ = ln.Close()
	})
	c, err := client.New(hs.URL, opToken)
	if err != nil {
		t.Fatal(err)
	}
	return s, c, clock
}

func TestSurfaceRoutes(t *testing.T) {
	s, c, clock := newServer(t)
	ctx := t.Context()
	key := "default/RTX4090/EU-RO-1"

	// why: an unknown id is a 404 whose message is the one line the CLI prints.
	var rep status.WhyReport
	id := uuid.NewString()
	err := c.Why(ctx, "task", id, &rep)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 404 || ce.Message != "no task with id "+id {
		t.Fatalf("why unknown task: %v", err)
	}
	if err := c.Why(ctx, "pool", "default", &rep); err != nil {
		t.Fatalf("why pool: %v", err)
	}
	if rep.State != "can spawn" {
		t.Errorf("pool state = %q", rep.State)
	}

	// breakers: list, open, reset, unknown key.
	var bl struct {
		Breakers []status.Breaker `json:"breakers"`
	}
	if err := c.Breakers(ctx, &bl); err != nil || len(bl.Breakers) != 1 || bl.Breakers[0].Key != key {
		t.Fatalf("breakers = %+v, %v", bl, err)
	}
	var b status.Breaker
	if err := c.BreakerSet(ctx, key, "open", "maintenance at the provider", &b); err != nil {
		t.Fatalf("open: %v", err)
	}
	if b.State != "open" || !b.Blocking || b.Reason != "maintenance at the provider" {
		t.Errorf("after open: %+v", b)
	}
	if err := c.BreakerSet(ctx, key, "reset", "", &b); err != nil || b.State != "closed" {
		t.Fatalf("reset: %+v, %v", b, err)
	}
	if err := c.BreakerSet(ctx, "default/H100/nowhere", "reset", "", &b); client.StatusOf(err) != 404 {
		t.Errorf("unknown key: %v", err)
	}
	if err := c.BreakerSet(ctx, key, "close", "", &b); client.StatusOf(err) != 400 {
		t.Errorf("unknown action: %v", err)
	}
	evs, err := c.Events(ctx, wire.EventFilter{Kinds: []string{string(core.EventBreakerState)}})
	if err != nil || len(evs) != 2 {
		t.Fatalf("breaker events = %d, %v", len(evs), err)
	}
	if !strings.Contains(evs[0].Message, "reset by an operator") {
		t.Errorf("newest breaker event: %q", evs[0].Message)
	}

	// series: a sample written by the leader's code is served.
	if err := s.Orchestrator.Sample(ctx, clock.Now().Add(-time.Minute), clock.Now()); err != nil {
		t.Fatalf("sample: %v", err)
	}
	var series status.SeriesReport
	if err := c.Series(ctx, time.Hour, &series); err != nil || len(series.Points) != 1 {
		t.Fatalf("series = %+v, %v", series, err)
	}
	if err := c.Series(ctx, 30*24*time.Hour, &series); client.StatusOf(err) != 400 {
		t.Errorf("series window of 30 days: %v", err)
	}

	// Following events: only settled events, oldest first, resuming after
	// the last id, with nothing twice and nothing skipped.
	last := evs[0].ID
	clock.Advance(time.Second)
	for i := range 3 {
		if err := s.Store.EventInsertMany(ctx, []*core.Event{{Time: clock.Now(), Kind: core.EventTick, Message: "tick " + string(rune('a'+i))}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.EventsAfter(ctx, wire.EventFilter{}, last)
	if err != nil || len(got) != 0 {
		t.Fatalf("events younger than the settle time: %d, %v", len(got), err)
	}
	clock.Advance(3 * time.Second)
	got, err = c.EventsAfter(ctx, wire.EventFilter{Limit: 2}, last)
	if err != nil || len(got) != 2 || got[0].Message != "tick a" || got[1].Message != "tick b" {
		t.Fatalf("first page: %+v, %v", got, err)
	}
	got, err = c.EventsAfter(ctx, wire.EventFilter{}, got[1].ID)
	if err != nil || len(got) != 1 || got[0].Message != "tick c" {
		t.Fatalf("resume: %+v, %v", got, err)
	}
}

// Every metric served on /metrics passes client_golang's lint (Prometheus
// naming conventions) and is documented in docs/metrics.md; the metrics a
// running fleet always has are served.
func TestMetricsLintAndDocumented(t *testing.T) {
	s, c, clock := newServer(t)
	ctx := t.Context()
	if _, err := c.Submit(ctx, &wire.SubmitRequest{Type: "render", Params: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Orchestrator.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Second)
	}
	reg := s.API.Registry()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(drover_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, f := range families {
		served[f.GetName()] = true
		if strings.HasPrefix(f.GetName(), "drover_") && !documented[f.GetName()] {
			t.Errorf("metric %s is served but not documented in docs/metrics.md", f.GetName())
		}
	}
	for _, name := range []string{"drover_tasks", "drover_workers", "drover_breaker_state", "drover_spend_usd_per_hour",
		"drover_tick_duration_seconds", "drover_tick_actions_total", "drover_task_requeues_total", "drover_lease_expiries_total",
		"drover_worker_spawns_total", "drover_provider_calls_total", "drover_api_requests_total"} {
		if !served[name] {
			t.Errorf("metric %s is not served after three ticks with work queued", name)
		}
		if !documented[name] {
			t.Errorf("metric %s is not documented", name)
		}
	}
}
