package runpod_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/runpod"
)

const testKey = "rp_test_SECRET_key_123"

// recorded is one request the recording server saw.
type recorded struct {
	Method, Path, Query string
	Header              http.Header
	Body                []byte
}

// recorder answers from a queue of canned responses and records requests.
type recorder struct {
	mu      sync.Mutex
	reqs    []recorded
	answers []answer
}

type answer struct {
	status int
	header map[string]string
	body   string
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, recorded{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: b})
	a := answer{status: 500, body: `{"title":"Internal Server Error","status":500,"detail":"no answer scripted"}`}
	if len(rc.answers) > 0 {
		a = rc.answers[0]
		if len(rc.answers) > 1 {
			rc.answers = rc.answers[1:] // the last answer repeats
		}
	}
	rc.mu.Unlock()
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	if strings.HasPrefix(a.body, "{\"title\"") || strings.Contains(a.body, "\"detail\"") {
		w.Header().Set("Content-Type", "application/problem+json")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noSleep records waits and advances a fake clock instead of sleeping.
type noSleep struct {
	clock *core.FakeClock
	mu    sync.Mutex
	waits []time.Duration
}

func (n *noSleep) sleep(ctx context.Context, d time.Duration) error {
	n.mu.Lock()
	n.waits = append(n.waits, d)
	n.mu.Unlock()
	n.clock.Advance(d)
	return ctx.Err()
}

var quiet = slog.New(slog.DiscardHandler)

func newRecorded(t *testing.T, answers ...answer) (*recorder, *runpod.Provider, *noSleep) {
	t.Helper()
	rc := &recorder{answers: answers}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	ns := &noSleep{clock: core.NewFakeClock(time.Date(2026, 8, 20, 6, 0, 0, 0, time.UTC))}
	c, err := runpod.NewClient(runpod.ClientOptions{BaseURL: srv.URL, APIKey: testKey, Sleep: ns.sleep, Now: ns.clock.Now, UserAgent: "drover-test"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := runpod.New(runpod.Options{Client: c, Cluster: "c0ffee", Pools: map[string]runpod.Pool{
		"gpu": {Image: "ghcr.io/acme/worker:1", GPUCount: 1, Disk: 40, NetworkVolume: "vol_1", MountPath: "/data",
			Registry: "reg_9", Exec: "python3 /app/handler.py"},
	}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return rc, p, ns
}

func TestCreateSendsTheSpecBody(t *testing.T) {
	rc, p, _ := newRecorded(t, answer{status: 201, body: fixture(t, "create_pod_201.json")})
	inst, err := p.Create(context.Background(), &provider.CreateRequest{
		WorkerID: "0190a0b0-0000-7000-8000-000000000001", Pool: "gpu",
		Placement: provider.Placement{GPU: "NVIDIA GeForce RTX 4090", Region: "US-TX-3", Cloud: "secure"},
		Image:     "ghcr.io/acme/worker:1",
		Env:       map[string]string{"HF_HOME": "/data/hf", "DROVER_SERVER": "https://drover.example", "DROVER_WORKER_ID": "0190a0b0-0000-7000-8000-000000000001", "DROVER_TOKEN": "tok"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(rc.reqs))
	}
	r := rc.reqs[0]
	if r.Method != "POST" || r.Path != "/v2/pods" || r.Query != "" {
		t.Errorf("request %s %s?%s, want POST /v2/pods", r.Method, r.Path, r.Query)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+testKey {
		t.Errorf("Authorization %q", got)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	var got map[string]any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name":          "drover-c0ffee-0190a0b0-0000-7000-8000-000000000001",
		"image":         "ghcr.io/acme/worker:1",
		"gpu":           map[string]any{"id": "NVIDIA GeForce RTX 4090", "count": 1.0},
		"cloud":         "SECURE",
		"dataCenterIds": []any{"US-TX-3"},
		"disk":          40.0,
		"mounts":        map[string]any{"network": []any{map[string]any{"volumeId": "vol_1", "path": "/data"}}},
		"registry":      "reg_9",
		"env": map[string]any{
			"HF_HOME": "/data/hf", "DROVER_SERVER": "https://drover.example", "DROVER_WORKER_ID": "0190a0b0-0000-7000-8000-000000000001",
			"DROVER_TOKEN": "tok", "DROVER_EXEC": "python3 /app/handler.py", "DROVER_CLUSTER": "c0ffee", "DROVER_POOL": "gpu",
		},
	}
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.MarshalIndent(got, "", " ")
		t.Errorf("body:\n%s", gb)
	}
	if _, ok := got["ports"]; ok {
		t.Error("ports sent although none are configured")
	}
	// The spec's 201 example decodes.
	if inst.ID != "7h9k2m4n6p" || inst.State != provider.InstancePending || inst.PricePerHour != 0.44 ||
		inst.Placement.GPU != "NVIDIA GeForce RTX 4090" || inst.Placement.Region != "US-KS-2" || inst.Placement.Cloud != "SECURE" {
		t.Errorf("instance %+v", inst)
	}
	if inst.CreatedAt.IsZero() {
		t.Error("createdAt not decoded")
	}
}

func TestGetListDeleteRequests(t *testing.T) {
	rc, p, _ := newRecorded(t,
		answer{status: 200, body: fixture(t, "get_pod_200.json")},
		answer{status: 200, body: fixture(t, "list_pods_200.json")},
		answer{status: 204},
		answer{status: 404, body: fixture(t, "error_404.json")},
		answer{status: 404, body: fixture(t, "error_404.json")},
	)
	ctx := context.Background()
	in, err := p.Get(ctx, "7h9k2m4n6p")
	if err != nil {
		t.Fatal(err)
	}
	if in.State != provider.InstanceRunning || in.WorkerID != "" {
		t.Errorf("get: %+v (a pod not named by this Drover has no worker id)", in)
	}
	list, err := p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("list returned %d foreign pods", len(list))
	}
	if err := p.Delete(ctx, "7h9k2m4n6p"); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, "gone1"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("delete 404: %v, want ErrNotFound", err)
	}
	if _, err := p.Get(ctx, "gone2"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("get 404: %v, want ErrNotFound", err)
	}
	want := []string{"GET /v2/pods/7h9k2m4n6p", "GET /v2/pods", "DELETE /v2/pods/7h9k2m4n6p", "DELETE /v2/pods/gone1", "GET /v2/pods/gone2"}
	for i, r := range rc.reqs {
		if got := r.Method + " " + r.Path; got != want[i] {
			t.Errorf("request %d: %s, want %s", i, got, want[i])
		}
		if len(r.Body) != 0 || r.Header.Get("Content-Type") != "" {
			t.Errorf("request %d has a body or content type", i)
		}
		if r.Header.Get("Authorization") != "Bearer "+testKey {
			t.Errorf("request %d: no bearer", i)
		}
	}
}

func TestCatalogRequestAndDecode(t *testing.T) {
	rc, p, _ := newRecorded(t, answer{status: 200, body: fixture(t, "catalog_gpus_200.json")})
	gpus, err := p.Client().GPUTypes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r := rc.reqs[0]; r.Method != "GET" || r.Path != "/v2/catalog/gpus" || r.Query != "include=AVAILABILITY&product=POD" {
		t.Errorf("catalog request %s %s?%s", r.Method, r.Path, r.Query)
	}
	if len(gpus) != 1 || gpus[0].ID != "NVIDIA GeForce RTX 4090" || gpus[0].Availability != "HIGH" ||
		len(gpus[0].DataCenters) != 1 || gpus[0].DataCenters[0].ID != "US-KS-2" {
		t.Errorf("catalog %+v", gpus)
	}
}

func TestAbsentFieldsAreUnknown(t *testing.T) {
	// A pod without cost, gpu, dataCenterId or createdAt: unknown, not zero-valued data.
	_, p, _ := newRecorded(t, answer{status: 200, body: `{"id":"p1","name":"drover-c0ffee-w1","status":"STARTING","env":{"DROVER_CLUSTER":"c0ffee","DROVER_POOL":"gpu"}}`})
	in, err := p.Get(context.Background(), "p1")
	if err != nil {
		t.Fatal(err)
	}
	if in.PricePerHour != 0 || in.Placement.Region != "" || !in.CreatedAt.IsZero() || in.WorkerID != "w1" || in.Pool != "gpu" || in.State != provider.InstancePending {
		t.Errorf("instance %+v", in)
	}
	var pod runpod.Pod
	if err := json.Unmarshal([]byte(fixture(t, "get_pod_200.json")), &pod); err != nil {
		t.Fatal(err)
	}
	if pod.Cost == nil || *pod.Cost != 0.44 || pod.CudaVersion == nil {
		t.Errorf("fixture pod: cost %v cuda %v", pod.Cost, pod.CudaVersion)
	}
	var bare runpod.Pod
	_ = json.Unmarshal([]byte(`{"id":"x","status":"RUNNING"}`), &bare)
	if bare.Cost != nil || bare.DataCenterID != nil || bare.StartedAt != nil {
		t.Error("absent fields decoded as values")
	}
}

func TestStatusMapping(t *testing.T) {
	cases := map[string]provider.InstanceState{
		"PROVISIONING": provider.InstancePending, "STARTING": provider.InstancePending, "RUNNING": provider.InstanceRunning,
		"EXITED": provider.InstanceGone, "ERROR": provider.InstanceGone, "TERMINATED": provider.InstanceGone, "WEIRD": provider.InstanceGone,
	}
	for s, want := range cases {
		if got := runpod.MapStatus(s); got != want {
			t.Errorf("%s → %s, want %s", s, got, want)
		}
	}
	_, p, _ := newRecorded(t, answer{status: 200, body: `{"id":"p1","name":"drover-c0ffee-w1","status":"EXITED","env":{"DROVER_CLUSTER":"c0ffee"}}`})
	in, err := p.Get(context.Background(), "p1")
	if err != nil {
		t.Fatal(err)
	}
	if !in.Exited || in.State != provider.InstanceGone {
		t.Errorf("EXITED pod: %+v, want gone and exited (agent-exit)", in)
	}
}

func TestClassification(t *testing.T) {
	cases := []struct {
		status int
		body   string
		kind   provider.Kind
		has    string
	}{
		{400, fixture(t, "error_400_capacity.json"), provider.KindCapacity, "no longer any instances"},
		{400, `{"title":"Bad Request","status":400,"detail":"exactly one of gpu or cpu must be set"}`, provider.KindInvalid, "exactly one"},
		{401, `{"title":"Unauthorized","status":401,"detail":"invalid API key"}`, provider.KindQuota, "DROVER_RUNPOD_API_KEY"},
		{402, `{"title":"Payment Required","status":402,"detail":"insufficient balance"}`, provider.KindQuota, "add funds"},
		{403, `{"title":"Forbidden","status":403,"detail":"access denied"}`, provider.KindQuota, "permission"},
		{422, `{"detail":"Request validation failed.","errors":["$: additional properties 'bogus' not allowed"],"status":422,"title":"Unprocessable Entity"}`, provider.KindInvalid, "'bogus' not allowed"},
		{409, `{"title":"Conflict","status":409,"detail":"pod is a cluster member"}`, provider.KindTransient, "cluster member"},
		{404, `{"message":"Pod not found."}`, provider.KindInvalid, "Pod not found."}, // create with an unknown template
		{500, `{"error":"Something went wrong."}`, provider.KindTransient, "Something went wrong."},
	}
	for _, c := range cases {
		_, p, _ := newRecorded(t, answer{status: c.status, body: c.body})
		_, err := p.Create(context.Background(), &provider.CreateRequest{WorkerID: "w", Pool: "gpu", Placement: provider.Placement{GPU: "NVIDIA L40S"}})
		if got := provider.KindOf(err); got != c.kind {
			t.Errorf("%d: kind %s, want %s (%v)", c.status, got, c.kind, err)
		}
		if err == nil || !strings.Contains(err.Error(), c.has) {
			t.Errorf("%d: error %v does not say %q", c.status, err, c.has)
		}
		if err != nil && strings.Contains(err.Error(), testKey) {
			t.Errorf("%d: the API key leaked into the error", c.status)
		}
	}
}

func TestRetries(t *testing.T) {
	ctx := context.Background()
	// GET: 503, 429 (Retry-After 7), then 200.
	rc, p, ns := newRecorded(t,
		answer{status: 503, body: `{"title":"Service Unavailable","status":503,"detail":"upstream"}`},
		answer{status: 429, header: map[string]string{"Retry-After": "7"}, body: fixture(t, "error_429.json")},
		answer{status: 200, body: fixture(t, "get_pod_200.json")},
	)
	if _, err := p.Get(ctx, "7h9k2m4n6p"); err != nil {
		t.Fatal(err)
	}
	if len(rc.reqs) != 3 {
		t.Errorf("%d requests, want 3", len(rc.reqs))
	}
	if len(ns.waits) != 2 || ns.waits[1] != 7*time.Second {
		t.Errorf("waits %v: want a backoff then the 7 s Retry-After", ns.waits)
	}
	// 422 and 402 are never retried.
	for _, st := range []int{422, 402, 403, 401, 400} {
		rc, p, _ := newRecorded(t, answer{status: st, body: `{"title":"x","status":1,"detail":"no"}`})
		_, _ = p.Create(ctx, &provider.CreateRequest{WorkerID: "w", Pool: "gpu", Placement: provider.Placement{GPU: "NVIDIA L40S"}})
		if len(rc.reqs) != 1 {
			t.Errorf("status %d retried: %d requests", st, len(rc.reqs))
		}
	}
}

func TestCreateAfterAmbiguous5xxFindsThePod(t *testing.T) {
	// The create answers 502, but the pod exists: the list finds it by name
	// and no second create is sent.
	name := "drover-c0ffee-w7"
	rc, p, _ := newRecorded(t,
		answer{status: 502, body: `{"title":"Bad Gateway","status":502,"detail":"upstream"}`},
		answer{status: 200, body: `{"pods":[{"id":"p7","name":"` + name + `","status":"PROVISIONING","env":{"DROVER_CLUSTER":"c0ffee","DROVER_POOL":"gpu"}}]}`},
	)
	in, err := p.Create(context.Background(), &provider.CreateRequest{WorkerID: "w7", Pool: "gpu", Placement: provider.Placement{GPU: "NVIDIA L40S"}})
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != "p7" || len(rc.reqs) != 2 || rc.reqs[1].Method != "GET" {
		t.Errorf("instance %+v after %d requests", in, len(rc.reqs))
	}
}

func TestCreateAfterAmbiguous5xxUncheckedMaybeCreated(t *testing.T) {
	// The create answers 502 and the list that would find the pod fails:
	// no second create is sent (it could make a second pod), and the error
	// says the pod may exist.
	rc, p, _ := newRecorded(t,
		answer{status: 502, body: `{"title":"Bad Gateway","status":502,"detail":"upstream"}`},
		answer{status: 500, body: `{"title":"Internal","status":500,"detail":"down"}`},
	)
	_, err := p.Create(context.Background(), &provider.CreateRequest{WorkerID: "w8", Pool: "gpu", Placement: provider.Placement{GPU: "NVIDIA L40S"}})
	if err == nil || !provider.MaybeCreated(err) {
		t.Fatalf("create error %v: want one marked MaybeCreated", err)
	}
	if provider.KindOf(err) != provider.KindTransient {
		t.Errorf("kind %s, want transient", provider.KindOf(err))
	}
	creates := 0
	for _, r := range rc.reqs {
		if r.Method == "POST" {
			creates++
		}
	}
	if creates != 1 {
		t.Errorf("%d creates sent after an unchecked 502, want 1", creates)
	}
}

func TestAccountWideQuotaBlocksCreates(t *testing.T) {
	rc, p, _ := newRecorded(t, answer{status: 402, body: `{"title":"Payment Required","status":402,"detail":"insufficient balance"}`})
	for i := range 5 {
		_, err := p.Create(context.Background(), &provider.CreateRequest{WorkerID: "w", Pool: "gpu", Placement: provider.Placement{GPU: "NVIDIA L40S", Region: "EU-RO-1"}})
		if provider.KindOf(err) != provider.KindQuota || !runpod.AccountWide(err) || !provider.IsAccountWide(err) {
			t.Fatalf("create %d: %v, want an account-wide quota error", i, err)
		}
		if !strings.Contains(err.Error(), "add funds") {
			t.Errorf("create %d: no hint in %v", i, err)
		}
	}
	if len(rc.reqs) != 1 {
		t.Errorf("%d requests after a 402, want 1 (no spawn loop)", len(rc.reqs))
	}
}

func TestBadClientOptions(t *testing.T) {
	if _, err := runpod.NewClient(runpod.ClientOptions{APIKey: ""}); err == nil || !strings.Contains(err.Error(), "DROVER_RUNPOD_API_KEY") {
		t.Errorf("no key: %v", err)
	}
	if _, err := runpod.NewClient(runpod.ClientOptions{APIKey: "k", BaseURL: "ftp://x"}); err == nil {
		t.Error("ftp base URL accepted")
	}
}
