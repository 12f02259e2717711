package fakerunpod

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider/runpod"
)

type tclient struct {
	t   *testing.T
	url string
}

func (c tclient) do(method, path, body string) (int, http.Header, string) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, c.url+path, rd)
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestScriptedPodsAndEndpoints(t *testing.T) {
	clock := core.NewFakeClock(time.Date(2026, 8, 20, 6, 0, 0, 0, time.UTC))
	fk := New(Options{APIKey: "k", Clock: clock, ProvisionTime: time.Second, StartTime: time.Second, Quota: 100, Window: time.Minute,
		Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(fk.Handler())
	defer srv.Close()
	c := tclient{t, srv.URL}
	body := `{"name":"a","image":"x","gpu":{"id":"NVIDIA L40S","count":2}}`
	ids := []string{}
	for range 3 {
		st, h, b := c.do("POST", "/v2/pods", body)
		var p runpod.Pod
		if st != 201 || json.Unmarshal([]byte(b), &p) != nil || *p.Cost != 0.86*2 {
			t.Fatalf("create: %d %s", st, b)
		}
		if h.Get("RateLimit-Policy") != `"minute";q=100;w=60` || !strings.HasPrefix(h.Get("RateLimit"), `"minute";r=`) {
			t.Errorf("headers %q %q", h.Get("RateLimit-Policy"), h.Get("RateLimit"))
		}
		ids = append(ids, p.ID)
	}
	clock.Advance(3 * time.Second)
	fk.Exit(ids[0])
	fk.Fail(ids[1])
	fk.Vanish(ids[2])
	want := map[string]string{ids[0]: "EXITED", ids[1]: "ERROR"}
	for id, status := range want {
		_, _, b := c.do("GET", "/v2/pods/"+id, "")
		var p runpod.Pod
		_ = json.Unmarshal([]byte(b), &p)
		if p.Status != status || p.Cost == nil || *p.Cost != 0 || strings.Join(p.Actions, ",") != "start,terminate" {
			t.Errorf("%s: %s cost %v actions %v, want %s", id, p.Status, p.Cost, p.Actions, status)
		}
	}
	if st, _, _ := c.do("GET", "/v2/pods/"+ids[2], ""); st != 404 {
		t.Errorf("vanished pod: %d", st)
	}
	if st, _, b := c.do("POST", "/v2/pods/"+ids[0]+"/action", `{"action":"restart"}`); st != 409 {
		t.Errorf("restart of an EXITED pod: %d %s", st, b)
	}
	if st, _, b := c.do("POST", "/v2/pods/"+ids[0]+"/action", `{"action":"explode"}`); st != 422 || !strings.Contains(b, "must be one of") {
		t.Errorf("bad action: %d %s", st, b)
	}
	if st, _, _ := c.do("POST", "/v2/pods/"+ids[0]+"/action", `{"action":"terminate"}`); st != 204 {
		t.Errorf("terminate: %d", st)
	}
	if st, _, _ := c.do("GET", "/v2/pods?bogus=1", ""); st != 422 {
		t.Errorf("unknown list parameter: %d", st)
	}
	fk.NoCapacity("NVIDIA L40S", "EU-RO-1", -1)
	_, _, b := c.do("GET", "/v2/catalog/gpus?include=AVAILABILITY&product=POD", "")
	var cat runpod.ListGPUTypesResponse
	_ = json.Unmarshal([]byte(b), &cat)
	seen := false
	for _, g := range cat.GPUs {
		for _, dc := range g.DataCenters {
			if g.ID == "NVIDIA L40S" && dc.ID == "EU-RO-1" {
				seen = true
				if dc.Availability != "NONE" {
					t.Errorf("catalog shows stock where creates are refused: %+v", dc)
				}
			}
		}
	}
	if !seen {
		t.Error("catalog lacks L40S in EU-RO-1")
	}
	// Budget: requests past the window's quota are refused with Retry-After.
	for range 120 {
		c.do("GET", "/v2/pods", "")
	}
	st := fk.Stats()
	if st.MaxInWindow != 100 || st.OverBudget == 0 {
		t.Errorf("max in window %d, over budget %d", st.MaxInWindow, st.OverBudget)
	}
	if code, h, _ := c.do("GET", "/v2/pods", ""); code != 429 || h.Get("Retry-After") == "" {
		t.Errorf("over budget: %d Retry-After %q", code, h.Get("Retry-After"))
	}
	clock.Advance(time.Minute)
	if code, _, _ := c.do("GET", "/v2/pods", ""); code != 200 {
		t.Errorf("next window: %d", code)
	}
}

// TestPodHasEveryRequiredField: the fake's pods carry every property the
// v2 spec's Pod schema lists as required.
func TestPodHasEveryRequiredField(t *testing.T) {
	fk := New(Options{APIKey: "k", Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(fk.Handler())
	defer srv.Close()
	c := tclient{t, srv.URL}
	_, _, b := c.do("POST", "/v2/pods", `{"name":"a","image":"x","gpu":{"id":"NVIDIA L40S"}}`)
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(b), &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id", "name", "status", "actions", "image", "args", "disk", "mounts", "ports", "env", "registry",
		"cloud", "dataCenterId", "cudaVersion", "ssh", "template", "cost", "locked", "runtime", "createdAt", "startedAt", "globalNetworking"} {
		if _, ok := m[f]; !ok {
			t.Errorf("pod lacks required field %q: %s", f, b)
		}
	}
}
