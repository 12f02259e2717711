package runpod_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/runpod"
	"github.com/droverhq/drover/internal/provider/runpod/fakerunpod"
)

// againstFake builds a provider talking to a fake on a shared fake clock;
// the client's waits advance the clock.
func againstFake(t *testing.T, opt fakerunpod.Options) (*fakerunpod.Server, *runpod.Provider, *core.FakeClock) {
	t.Helper()
	clock := core.NewFakeClock(time.Date(2026, 8, 20, 6, 0, 0, 0, time.UTC))
	opt.APIKey, opt.Clock, opt.Logger = testKey, clock, quiet
	fk := fakerunpod.New(opt)
	srv := httptest.NewServer(fk.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(fk.Close)
	c, err := runpod.NewClient(runpod.ClientOptions{
		BaseURL: srv.URL, APIKey: testKey, Now: clock.Now,
		Sleep: sleeper(clock),
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := runpod.New(runpod.Options{Client: c, Cluster: "c1", Logger: quiet, Pools: map[string]runpod.Pool{
		"gpu": {Image: "acme/worker:1", Exec: "cat"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return fk, p, clock
}

// sleeper moves the fake clock to the end of the wait (never backwards,
// and concurrent waits for the same moment move it once), like time does.
func sleeper(clock *core.FakeClock) func(ctx context.Context, d time.Duration) error {
	var mu sync.Mutex
	return func(ctx context.Context, d time.Duration) error {
		target := clock.Now().Add(d)
		mu.Lock()
		defer mu.Unlock()
		if target.After(clock.Now()) {
			clock.Set(target)
		}
		return ctx.Err()
	}
}

func create(p *runpod.Provider, worker string, pl provider.Placement) (*provider.Instance, error) {
	return p.Create(context.Background(), &provider.CreateRequest{WorkerID: worker, Pool: "gpu", Placement: pl,
		Env: map[string]string{"DROVER_TOKEN": "t"}})
}

var rtx = provider.Placement{GPU: "NVIDIA GeForce RTX 4090", Region: "US-TX-3"}

func TestFakeLifecycleAndOwnership(t *testing.T) {
	fk, p, clock := againstFake(t, fakerunpod.Options{ProvisionTime: 10 * time.Second, StartTime: 20 * time.Second})
	ctx := context.Background()
	in, err := create(p, "w1", rtx)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != provider.InstancePending || in.PricePerHour != 0.44 || in.Placement.Region != "US-TX-3" || in.WorkerID != "w1" {
		t.Fatalf("created %+v", in)
	}
	// A second Drover (another cluster) on the same account.
	other, err := runpod.New(runpod.Options{Client: p.Client(), Cluster: "c2", Logger: quiet, Pools: map[string]runpod.Pool{"gpu": {Image: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Create(ctx, &provider.CreateRequest{WorkerID: "w9", Pool: "gpu", Placement: rtx}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		d    time.Duration
		want provider.InstanceState
	}{{0, provider.InstancePending}, {15 * time.Second, provider.InstancePending}, {20 * time.Second, provider.InstanceRunning}} {
		clock.Advance(step.d)
		list, err := p.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ID != in.ID || list[0].State != step.want {
			t.Fatalf("after %s: list %+v, want only our pod in %s", step.d, list, step.want)
		}
	}
	if err := p.Delete(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, in.ID); !isNotFound(err) {
		t.Errorf("second delete: %v, want not found", err)
	}
	if list, _ := p.List(ctx); len(list) != 0 {
		t.Errorf("deleted pod still listed: %+v", list)
	}
	pods := fk.Pods()
	if len(pods) != 2 || pods[0].Status != "TERMINATED" || pods[0].Billed <= 0 {
		t.Errorf("fake pods %+v", pods)
	}
	billed := pods[0].Billed
	clock.Advance(time.Hour)
	if after := fk.Pods()[0].Billed; after != billed {
		t.Errorf("billing went on after delete: %g → %g", billed, after)
	}
	if len(fk.Live()) != 1 {
		t.Errorf("live pods %+v, want only the other cluster's", fk.Live())
	}
}

func isNotFound(err error) bool { return provider.KindOf(err) == provider.KindNotFound }

func TestFakeValidatesLikeTheSpec(t *testing.T) {
	fk := fakerunpod.New(fakerunpod.Options{APIKey: testKey, Logger: quiet})
	srv := httptest.NewServer(fk.Handler())
	defer srv.Close()
	cases := []struct {
		body   string
		status int
		has    string
	}{
		{`{"name":"a","image":"x","gpu":{"id":"NVIDIA L40S"},"bogus":1}`, 422, "additional properties 'bogus' not allowed"},
		{`{"image":"x","gpu":{"id":"NVIDIA L40S"}}`, 422, "missing property 'name'"},
		{`{"name":"a","image":"x","gpu":{"id":"NVIDIA L40S","count":0}}`, 422, "gpu.count"},
		{`{"name":"a","image":"x","gpu":{"id":"NVIDIA L40S"},"cloud":"SPOT"}`, 422, "cloud"},
		{`{"name":"a","image":"x","gpu":{"id":"NVIDIA L40S"},"interruptible":true}`, 422, "'interruptible' not allowed"},
		{`{"name":"a","gpu":{"id":"NVIDIA L40S"}}`, 400, "image is required"},
		{`{"name":"a","image":"x"}`, 400, "exactly one of gpu or cpu"},
		{`{"name":"a","image":"x","gpu":{"id":"NVIDIA L40S"}}`, 201, `"status":"PROVISIONING"`},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("POST", srv.URL+"/v2/pods", stringsReader(c.body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b := readAll(resp)
		if resp.StatusCode != c.status || !contains(b, c.has) {
			t.Errorf("%s → %d %s, want %d with %q", c.body, resp.StatusCode, b, c.status, c.has)
		}
		if c.status >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: content type %q", c.body, resp.Header.Get("Content-Type"))
		}
	}
	// No key, wrong key.
	for _, auth := range []string{"", "Bearer nope"} {
		req, _ := http.NewRequest("GET", srv.URL+"/v2/pods", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(resp)
		if resp.StatusCode != 401 {
			t.Errorf("auth %q: %d", auth, resp.StatusCode)
		}
	}
}

func TestCapacityFallsToTheNextDataCenterAndCatalogSaysSo(t *testing.T) {
	fk, p, _ := againstFake(t, fakerunpod.Options{})
	fk.NoCapacity("NVIDIA GeForce RTX 4090", "US-TX-3", -1)
	_, err := create(p, "w1", rtx)
	if provider.KindOf(err) != provider.KindCapacity {
		t.Fatalf("create in a full data center: %v, want capacity", err)
	}
	in, err := create(p, "w1", provider.Placement{GPU: "NVIDIA GeForce RTX 4090", Region: "US-KS-2"})
	if err != nil || in.Placement.Region != "US-KS-2" {
		t.Fatalf("next candidate: %+v %v", in, err)
	}
	order := p.Order(context.Background(), "gpu", []provider.Placement{rtx, {GPU: "NVIDIA GeForce RTX 4090", Region: "US-KS-2"}, {GPU: "NVIDIA H100 80GB HBM3", Region: "US-TX-3"}})
	if order[0].Region != "US-KS-2" || order[2].Region != "US-TX-3" || order[2].GPU != "NVIDIA H100 80GB HBM3" && order[1].Region != "US-TX-3" {
		t.Errorf("availability order %+v", order)
	}
}

func TestAmbiguousCreateMakesOnePod(t *testing.T) {
	fk, p, _ := againstFake(t, fakerunpod.Options{})
	fk.Inject(fakerunpod.Fault{Route: fakerunpod.RouteCreate, Status: 503, AfterDoing: true})
	in, err := create(p, "w1", rtx)
	if err != nil {
		t.Fatal(err)
	}
	st := fk.Stats()
	if st.Created != 1 || len(fk.Pods()) != 1 || fk.Pods()[0].ID != in.ID {
		t.Errorf("created %d pods (attempts %d), want exactly 1 and it returned", st.Created, st.CreateAttempts)
	}
}

func TestLimiterStaysUnderTheAdvertisedBudget(t *testing.T) {
	fk, p, _ := againstFake(t, fakerunpod.Options{Quota: 10, Window: 10 * time.Second})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := range 8 {
		wg.Go(func() {
			for i := range 15 {
				if _, err := p.List(ctx); err != nil {
					errs <- err
				}
				if i%5 == 0 {
					if _, err := create(p, fmt.Sprintf("w%d-%d", g, i), rtx); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := fk.Stats()
	if st.MaxInWindow > 10 {
		t.Errorf("%d requests in one window, budget 10", st.MaxInWindow)
	}
	if st.OverBudget > 0 {
		t.Errorf("%d requests refused for the budget: the limiter did not hold back", st.OverBudget)
	}
	if p.Client().Limiter().Waits() == 0 {
		t.Error("the limiter never waited")
	}
	if st.Created != 8*3 {
		t.Errorf("created %d pods, want 24", st.Created)
	}
}

func TestStormOf429And5xxLosesNothing(t *testing.T) {
	fk, p, _ := againstFake(t, fakerunpod.Options{Seed: 7})
	fk.SetErrorRates(0.2, 0.2, 2)
	created := map[string]bool{}
	for i := range 20 {
		in, err := create(p, fmt.Sprintf("w%02d", i), rtx)
		if err != nil {
			// A create may still fail after its retries; it is a clean
			// failure then (no pod exists for it).
			continue
		}
		created[in.ID] = true
	}
	fk.SetErrorRates(0, 0, 0)
	pods := fk.Pods()
	names := map[string]int{}
	for _, pd := range pods {
		names[pd.Name]++
		if !created[pd.ID] {
			t.Errorf("pod %s (%s) exists but no create returned it: a lost spawn", pd.ID, pd.Name)
		}
	}
	for n, c := range names {
		if c > 1 {
			t.Errorf("%d pods named %s", c, n)
		}
	}
	if fk.Stats().Injected == 0 {
		t.Error("no faults were injected")
	}
}

func TestCatalogOutageKeepsTheConfiguredOrder(t *testing.T) {
	fk, p, clock := againstFake(t, fakerunpod.Options{})
	fk.Inject(fakerunpod.Fault{Route: fakerunpod.RouteCatalog, Status: 500, Count: runpod.DefaultMaxAttempts})
	in := []provider.Placement{{GPU: "NVIDIA H100 80GB HBM3", Region: "US-TX-3"}, rtx}
	for range 3 {
		if out := p.Order(context.Background(), "gpu", in); out[0] != in[0] || out[1] != in[1] {
			t.Fatalf("order during an outage: %+v", out)
		}
	}
	calls := fk.Stats().Calls[fakerunpod.RouteCatalog]
	if calls != runpod.DefaultMaxAttempts {
		t.Errorf("%d catalog calls for 3 orders within the TTL, want one call's %d tries", calls, runpod.DefaultMaxAttempts)
	}
	// After the TTL, with the catalog back: H100 stock is LOW, RTX 4090 HIGH.
	clock.Advance(runpod.DefaultCatalogTTL + time.Second)
	if out := p.Order(context.Background(), "gpu", in); out[0] != rtx {
		t.Errorf("order with the catalog back: %+v", out)
	}
}

func TestSlowAnswerTimesOutAndIsRetried(t *testing.T) {
	clock := core.NewFakeClock(time.Date(2026, 8, 20, 6, 0, 0, 0, time.UTC))
	fk := fakerunpod.New(fakerunpod.Options{APIKey: testKey, Clock: clock, Logger: quiet})
	srv := httptest.NewServer(fk.Handler())
	defer srv.Close()
	c, err := runpod.NewClient(runpod.ClientOptions{BaseURL: srv.URL, APIKey: testKey, Now: clock.Now, Sleep: sleeper(clock),
		Timeout: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fk.Inject(fakerunpod.Fault{Route: fakerunpod.RouteList, Delay: time.Minute})
	if _, err := c.ListPods(context.Background()); err != nil {
		t.Fatalf("list after one slow answer: %v", err)
	}
	if n := fk.Stats().Calls[fakerunpod.RouteList]; n != 2 {
		t.Errorf("%d list calls, want 2 (the slow one timed out)", n)
	}
	fk.Inject(fakerunpod.Fault{Route: fakerunpod.RouteList, Delay: time.Minute, Count: runpod.DefaultMaxAttempts})
	_, err = c.ListPods(context.Background())
	if provider.KindOf(err) != provider.KindTransient || !strings.Contains(err.Error(), "timeout") || strings.Contains(err.Error(), testKey) {
		t.Errorf("list with every answer slow: %v", err)
	}
}
