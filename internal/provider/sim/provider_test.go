package sim

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
)

var start = time.Date(2025, 10, 15, 12, 0, 0, 0, time.UTC)

var pl = provider.Placement{GPU: "RTX4090", Region: "EU-RO-1", Cloud: "SECURE"}

func newProvider(t *testing.T, def Script) (*Provider, *core.FakeClock) {
	t.Helper()
	clock := core.NewFakeClock(start)
	return New(clock, Options{Seed: 1, Default: def}), clock
}

func create(t *testing.T, p *Provider, worker string) *provider.Instance {
	t.Helper()
	inst, err := p.Create(context.Background(), &provider.CreateRequest{WorkerID: worker, Pool: "default", Placement: pl,
		Env: map[string]string{"DROVER_TOKEN": "secret"}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return inst
}

func TestCreateProvisionsLazily(t *testing.T) {
	ctx := context.Background()
	p, clock := newProvider(t, Script{ProvisionTime: 90 * time.Second, PricePerHour: 0.69})
	inst := create(t, p, "w1")
	if inst.State != provider.InstancePending || inst.WorkerID != "w1" || inst.PricePerHour != 0.69 || inst.Pool != "default" {
		t.Fatalf("created %+v", inst)
	}
	clock.Advance(89 * time.Second)
	got, err := p.Get(ctx, inst.ID)
	if err != nil || got.State != provider.InstancePending {
		t.Fatalf("before provision time: %+v %v", got, err)
	}
	clock.Advance(time.Second)
	list, err := p.List(ctx)
	if err != nil || len(list) != 1 || list[0].State != provider.InstanceRunning {
		t.Fatalf("after provision time: %+v %v", list, err)
	}
}

func TestDeleteAndNotFound(t *testing.T) {
	ctx := context.Background()
	p, _ := newProvider(t, Script{})
	inst := create(t, p, "w1")
	if err := p.Delete(ctx, inst.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := p.Delete(ctx, inst.ID); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if err := p.Delete(ctx, "nope"); !errors.Is(err, provider.ErrNotFound) || provider.KindOf(err) != provider.KindNotFound {
		t.Fatalf("unknown delete: %v", err)
	}
	if _, err := p.Get(ctx, inst.ID); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if list, _ := p.List(ctx); len(list) != 0 {
		t.Fatalf("deleted instance listed: %+v", list)
	}
}

func TestScriptedCreateErrors(t *testing.T) {
	ctx := context.Background()
	p, _ := newProvider(t, Script{})
	key := pl.Key("default")

	p.SetScript(key, Script{CapacityErrors: 2})
	for i := range 2 {
		_, err := p.Create(ctx, &provider.CreateRequest{WorkerID: "w", Pool: "default", Placement: pl})
		if provider.KindOf(err) != provider.KindCapacity {
			t.Fatalf("create %d: %v, want capacity", i, err)
		}
	}
	create(t, p, "w3")

	p.SetScript(key, Script{CapacityAlways: true})
	for range 3 {
		if _, err := p.Create(ctx, &provider.CreateRequest{Pool: "default", Placement: pl}); provider.KindOf(err) != provider.KindCapacity {
			t.Fatalf("CapacityAlways: %v", err)
		}
	}
	p.SetScript(key, Script{QuotaError: true})
	if _, err := p.Create(ctx, &provider.CreateRequest{Pool: "default", Placement: pl}); provider.KindOf(err) != provider.KindQuota {
		t.Fatalf("QuotaError: %v", err)
	}
	// Other placements are unaffected.
	other := provider.Placement{GPU: "L40S", Region: "EU-SE-1"}
	if _, err := p.Create(ctx, &provider.CreateRequest{Pool: "default", Placement: other}); err != nil {
		t.Fatalf("other placement: %v", err)
	}
}

func TestInjectedAPIFaultsAndCalls(t *testing.T) {
	ctx := context.Background()
	p, clock := newProvider(t, Script{})
	p.SetLatency(750 * time.Millisecond)
	boom := provider.NewError("create", provider.KindTransient, "503")
	p.NextCreateErr = boom
	if _, err := p.Create(ctx, &provider.CreateRequest{WorkerID: "w1", Pool: "default", Placement: pl}); !errors.Is(err, boom) {
		t.Fatalf("NextCreateErr: %v", err)
	}
	inst := create(t, p, "w1") // consumed once

	p.FailList(2)
	for i := range 2 {
		if _, err := p.List(ctx); provider.KindOf(err) != provider.KindTransient {
			t.Fatalf("FailList call %d: %v", i, err)
		}
	}
	if list, err := p.List(ctx); err != nil || len(list) != 1 {
		t.Fatalf("third list: %v %v", list, err)
	}
	p.NextDeleteErr = errors.New("delete broke")
	if err := p.Delete(ctx, inst.ID); err == nil {
		t.Fatal("NextDeleteErr ignored")
	}
	if clock.Now() != start {
		t.Fatalf("latency advanced the clock to %v", clock.Now())
	}

	calls := p.Calls()
	wantOps := []string{"create", "create", "list", "list", "list", "delete"}
	if len(calls) != len(wantOps) {
		t.Fatalf("calls = %+v", calls)
	}
	for i, c := range calls {
		if c.Op != wantOps[i] || c.Latency != 750*time.Millisecond {
			t.Fatalf("call %d = %+v, want op %s with latency", i, c, wantOps[i])
		}
	}
	if calls[1].InstanceID != inst.ID || calls[1].WorkerID != "w1" || calls[0].Err == nil || calls[1].Err != nil {
		t.Fatalf("create calls recorded wrong: %+v", calls[:2])
	}
	if p.CallCount("list") != 3 {
		t.Fatalf("CallCount(list) = %d", p.CallCount("list"))
	}
	p.Reset()
	if len(p.Calls()) != 0 {
		t.Fatal("Reset kept calls")
	}
}

func TestVanishPreemptKillInject(t *testing.T) {
	ctx := context.Background()
	p, clock := newProvider(t, Script{ProvisionTime: time.Minute})
	p.SetScript(pl.Key("default"), Script{ProvisionTime: time.Minute, VanishAfter: 10 * time.Minute})
	vanishing := create(t, p, "v")
	other := provider.Placement{GPU: "L40S", Region: "EU-SE-1"}
	p.SetScript(other.Key("default"), Script{ProvisionTime: time.Minute, PreemptAfter: 5 * time.Minute})
	preempted, err := p.Create(ctx, &provider.CreateRequest{WorkerID: "p", Pool: "default", Placement: other})
	if err != nil {
		t.Fatal(err)
	}
	orphan := p.Inject(provider.Instance{WorkerID: "no-row", Pool: "default", Placement: pl})

	clock.Advance(6 * time.Minute)
	got, err := p.Get(ctx, preempted.ID)
	if err != nil || got.State != provider.InstanceGone || !got.Preempted {
		t.Fatalf("preempted: %+v %v", got, err)
	}
	list, _ := p.List(ctx)
	if len(list) != 2 || list[0].ID != vanishing.ID || list[1].ID != orphan || list[1].WorkerID != "no-row" {
		t.Fatalf("list at 6m: %+v", list)
	}
	clock.Advance(5 * time.Minute)
	if _, err := p.Get(ctx, vanishing.ID); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("vanished get: %v", err)
	}
	if !p.Kill(orphan) || p.Kill(orphan) || p.Preempt("unknown") {
		t.Fatal("Kill/Preempt return values")
	}
	if list, _ := p.List(ctx); len(list) != 0 {
		t.Fatalf("list at 11m: %+v", list)
	}
	if n := len(p.Instances()); n != 3 {
		t.Fatalf("Instances() = %d, want 3", n)
	}
}

func TestDistributionsAreSeeded(t *testing.T) {
	run := func() []time.Duration {
		clock := core.NewFakeClock(start)
		p := New(clock, Options{Seed: 42, Default: Script{ProvisionDist: Uniform(time.Minute, 10*time.Minute)}})
		var out []time.Duration
		for range 5 {
			inst := create(t, p, "w")
			in := p.instances[inst.ID]
			out = append(out, in.runningAt.Sub(start))
		}
		return out
	}
	a, b := run(), run()
	distinct := map[time.Duration]bool{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different draws: %v vs %v", a, b)
		}
		if a[i] < time.Minute || a[i] > 10*time.Minute {
			t.Fatalf("draw %v outside [1m,10m]", a[i])
		}
		distinct[a[i]] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("distribution drew one value: %v", a)
	}
}
