package provider_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/sim"
	"github.com/prometheus/client_golang/prometheus"
)

func TestInstrument(t *testing.T) {
	ctx := context.Background()
	clock := core.NewFakeClock(time.Date(2025, 10, 15, 12, 0, 0, 0, time.UTC))
	sp := sim.New(clock, sim.Options{})
	pl := provider.Placement{GPU: "RTX4090", Region: "EU-RO-1"}
	sp.SetScript(pl.Key("default"), sim.Script{CapacityErrors: 1})

	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	p := provider.Instrument(sp, reg, logger)
	if p.Name() != "sim" {
		t.Fatalf("Name = %q", p.Name())
	}

	const token = "tok-super-secret-123"
	req := &provider.CreateRequest{WorkerID: "w1", Pool: "default", Placement: pl, Env: map[string]string{"DROVER_TOKEN": token}}
	if _, err := p.Create(ctx, req); provider.KindOf(err) != provider.KindCapacity {
		t.Fatalf("first create: %v, want capacity", err)
	}
	inst, err := p.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.List(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, inst.ID); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}

	// A second decorator on the same registry shares the collectors.
	p2 := provider.Instrument(sp, reg, nil)
	sp.FailList(1)
	if _, err := p2.List(ctx); err == nil {
		t.Fatal("FailList ignored")
	}

	count := func(metric string, labels ...string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != metric {
				continue
			}
			for _, m := range mf.GetMetric() {
				got := map[string]string{}
				for _, lp := range m.GetLabel() {
					got[lp.GetName()] = lp.GetValue()
				}
				match := true
				for i := 0; i < len(labels); i += 2 {
					if got[labels[i]] != labels[i+1] {
						match = false
					}
				}
				if match {
					if m.Counter != nil {
						return m.GetCounter().GetValue()
					}
					return float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		return 0
	}
	tests := []struct {
		metric string
		labels []string
		want   float64
	}{
		{"drover_provider_calls_total", []string{"op", "create"}, 2},
		{"drover_provider_calls_total", []string{"op", "list"}, 2},
		{"drover_provider_calls_total", []string{"op", "delete"}, 2},
		{"drover_provider_errors_total", []string{"op", "create", "kind", "capacity"}, 1},
		{"drover_provider_errors_total", []string{"op", "delete", "kind", "not-found"}, 1},
		{"drover_provider_errors_total", []string{"op", "list", "kind", "transient"}, 1},
		{"drover_provider_call_duration_seconds", []string{"op", "get"}, 1},
	}
	for _, tt := range tests {
		if got := count(tt.metric, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "drover_provider_errors_total" && len(mf.GetMetric()) != 3 {
			t.Errorf("error series = %d, want 3", len(mf.GetMetric()))
		}
	}

	out := logs.String()
	if strings.Contains(out, token) {
		t.Fatalf("log contains the worker token:\n%s", out)
	}
	if !strings.Contains(out, `"op":"create"`) || !strings.Contains(out, `"kind":"capacity"`) || !strings.Contains(out, `"worker":"w1"`) {
		t.Fatalf("create error not logged:\n%s", out)
	}
	if strings.Contains(out, `"op":"delete"`) {
		t.Fatalf("not-found on delete is expected and must not be logged as a failure:\n%s", out)
	}
}

// orderingSim is a sim provider that also orders candidates (reversed).
type orderingSim struct{ *sim.Provider }

func (o orderingSim) Order(_ context.Context, _ string, pls []provider.Placement) []provider.Placement {
	out := make([]provider.Placement, 0, len(pls))
	for i := len(pls) - 1; i >= 0; i-- {
		out = append(out, pls[i])
	}
	return out
}

func TestInstrumentKeepsOrderer(t *testing.T) {
	clock := core.NewFakeClock(time.Date(2025, 10, 15, 12, 0, 0, 0, time.UTC))
	plain := provider.Instrument(sim.New(clock, sim.Options{}), nil, nil)
	if _, ok := plain.(provider.Orderer); ok {
		t.Fatal("a provider without Order gained one through the decorator")
	}
	wrapped := provider.Instrument(orderingSim{sim.New(clock, sim.Options{})}, nil, nil)
	ord, ok := wrapped.(provider.Orderer)
	if !ok {
		t.Fatal("the decorator hides the inner provider's Orderer")
	}
	in := []provider.Placement{{GPU: "A"}, {GPU: "B"}}
	got := ord.Order(t.Context(), "default", in)
	if len(got) != 2 || got[0].GPU != "B" || got[1].GPU != "A" {
		t.Fatalf("Order through the decorator = %v, want the inner provider's order [B A]", got)
	}
}
