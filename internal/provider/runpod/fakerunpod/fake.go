// Package fakerunpod is an in-repo HTTP server that follows RunPod's REST v2
// spec for every endpoint Drover uses: POST/GET /v2/pods, GET/DELETE
// /v2/pods/{id}, POST /v2/pods/{id}/action and GET /v2/catalog/gpus. It
// validates bodies as the real API does (unknown fields and a missing name
// are 422 with errors[]), answers with RFC 9457 problem documents, sends the
// RateLimit and RateLimit-Policy headers and enforces the budget with 429 and
// Retry-After, walks pods PROVISIONING → STARTING → RUNNING on a clock, bills
// their cost, and can be scripted: capacity errors per GPU type and data
// center, 402/401/403, 429 and 5xx bursts or rates, slow answers, pods that
// exit, error, vanish or never leave PROVISIONING. With Options.Agent it
// starts a real `drover agent` process for every pod that reaches RUNNING,
// with the pod's env, so the RunPod path runs end to end on loopback.
//
// # Pod lifecycle
//
//	create ──ProvisionTime──▶ STARTING ──StartTime──▶ RUNNING (agent started)
//	RUNNING ──Exit──▶ EXITED      RUNNING ──Fail──▶ ERROR
//	any ──Vanish──▶ (forgotten: 404, not listed)
//	any ──DELETE / terminate──▶ TERMINATED (404 afterwards, billing stops)
//
// Pods are evaluated against the clock on every request and on Step.
package fakerunpod

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider/runpod"
)

// Options configure the fake.
type Options struct {
	// APIKey is the only bearer token accepted (required).
	APIKey string
	// Clock drives pod states and rate-limit windows (default: system).
	Clock core.Clock
	// ProvisionTime and StartTime are how long a pod stays PROVISIONING
	// and STARTING.
	ProvisionTime, StartTime time.Duration
	// Quota and Window are the advertised per-window budget
	// ("minute";q=Quota;w=Window). Quota 0 disables rate limiting and the
	// headers.
	Quota  int
	Window time.Duration
	// GPUs is the catalog; default: a few common types in US-TX-3,
	// US-KS-2 and EU-RO-1, every one HIGH.
	GPUs []GPU
	// Agent, when set, is started for every pod that reaches RUNNING.
	Agent *AgentOptions
	// Seed seeds the random fault rates.
	Seed   uint64
	Logger *slog.Logger
}

// GPU is one catalog entry.
type GPU struct {
	ID           string
	Price        float64 // per GPU per hour, secure cloud
	DataCenters  []string
	Availability string // HIGH, MEDIUM, LOW, NONE
}

// DefaultGPUs is the default catalog.
var DefaultGPUs = []GPU{
	{ID: "NVIDIA GeForce RTX 4090", Price: 0.44, DataCenters: []string{"US-TX-3", "US-KS-2", "EU-RO-1"}, Availability: "HIGH"},
	{ID: "NVIDIA RTX A6000", Price: 0.49, DataCenters: []string{"US-TX-3", "EU-RO-1"}, Availability: "HIGH"},
	{ID: "NVIDIA L40S", Price: 0.86, DataCenters: []string{"US-KS-2", "EU-RO-1"}, Availability: "HIGH"},
	{ID: "NVIDIA A100-SXM4-80GB", Price: 1.49, DataCenters: []string{"US-KS-2"}, Availability: "MEDIUM"},
	{ID: "NVIDIA H100 80GB HBM3", Price: 2.69, DataCenters: []string{"US-TX-3"}, Availability: "LOW"},
}

// Server is the fake. Use Handler with an http.Server or httptest.
type Server struct {
	opt  Options
	log  *slog.Logger
	rand *rand.Rand

	mu      sync.Mutex
	pods    map[string]*pod
	order   []string
	nextID  int
	script  Script
	stats   Stats
	window  rateWindow
	agents  *agents
	started time.Time
	creates []CreateRecord
}

// podJSON is a pod as the API shows it: every field the spec's Pod
// requires (Drover's runpod.Pod reads only some of them).
type podJSON struct {
	runpod.Pod
	Args             string            `json:"args"`
	Disk             int               `json:"disk"`
	Mounts           map[string]any    `json:"mounts"`
	Ports            []string          `json:"ports"`
	Env              map[string]string `json:"env"`
	Registry         *string           `json:"registry"`
	SSH              map[string]any    `json:"ssh"`
	Template         *string           `json:"template"`
	Locked           bool              `json:"locked"`
	Runtime          map[string]any    `json:"runtime"`
	GlobalNetworking map[string]bool   `json:"globalNetworking"`
}

type pod struct {
	runpod.Pod
	req         *runpod.CreatePodRequest
	created     time.Time
	ended       *time.Time // deleted, exited or errored: billing stops
	billedUntil time.Time
	billed      float64 // USD
	price       float64
	stuck       bool
	forced      string // EXITED or ERROR once scripted
	vanished    bool
	deleted     bool
}

type rateWindow struct {
	start time.Time
	count int
}

// Stats counts what the fake saw.
type Stats struct {
	// Calls by "METHOD /path-pattern".
	Calls map[string]int
	// Created counts pods created (201); CreateAttempts every POST.
	Created, CreateAttempts int
	// MaxInWindow is the most requests seen in one rate-limit window;
	// OverBudget counts requests refused because the budget was spent.
	MaxInWindow, OverBudget int
	// Injected counts scripted faults answered.
	Injected int
	// Unauthorized counts requests with a bad or missing key.
	Unauthorized int
}

// CreateRecord is one POST /v2/pods that reached the endpoint.
type CreateRecord struct {
	Time time.Time
	Name string
	GPU  string
	// DataCenters is what the request asked for.
	DataCenters []string
	// Status is the answer: 201, or 400 for capacity, …
	Status int
}

// New returns a fake.
func New(opt Options) *Server {
	if opt.Clock == nil {
		opt.Clock = core.SystemClock{}
	}
	if opt.Window <= 0 {
		opt.Window = time.Minute
	}
	if opt.GPUs == nil {
		opt.GPUs = DefaultGPUs
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	s := &Server{
		opt: opt, log: opt.Logger.With("component", "fakerunpod"),
		rand: rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x5eed)),
		pods: map[string]*pod{}, stats: Stats{Calls: map[string]int{}},
		started: opt.Clock.Now(),
	}
	s.script.capacity = map[string]int{}
	if opt.Agent != nil {
		s.agents = newAgents(*opt.Agent, s.log)
	}
	return s
}

// Close stops every agent the fake started.
func (s *Server) Close() {
	if s.agents != nil {
		s.agents.stopAll()
	}
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/pods", s.handleCreate)
	mux.HandleFunc("GET /v2/pods", s.handleList)
	mux.HandleFunc("GET /v2/pods/{id}", s.handleGet)
	mux.HandleFunc("DELETE /v2/pods/{id}", s.handleDelete)
	mux.HandleFunc("POST /v2/pods/{id}/action", s.handleAction)
	mux.HandleFunc("GET /v2/catalog/gpus", s.handleCatalog)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "resource not found")
	})
	return s.gate(mux)
}

// gate authenticates, counts, rate-limits and injects faults before the
// endpoint runs.
func (s *Server) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := route(r)
		s.mu.Lock()
		s.stats.Calls[key]++
		if r.Header.Get("Authorization") != "Bearer "+s.opt.APIKey || s.opt.APIKey == "" {
			s.stats.Unauthorized++
			s.mu.Unlock()
			detail := "missing bearer token"
			if r.Header.Get("Authorization") != "" {
				detail = "invalid API key"
			}
			writeProblem(w, http.StatusUnauthorized, detail)
			return
		}
		now := s.opt.Clock.Now()
		limited, retry := s.rateLimit(w, now)
		var f *Fault
		if !limited {
			f = s.script.take(key, s.rand)
			if f != nil {
				s.stats.Injected++
			}
		}
		s.mu.Unlock()
		if limited {
			w.Header().Set("Retry-After", strconv.Itoa(retry))
			writeProblem(w, http.StatusTooManyRequests, "rate limit exceeded for the minute window")
			return
		}
		if f != nil {
			if f.Delay > 0 {
				select {
				case <-time.After(f.Delay):
				case <-r.Context().Done():
					return
				}
			}
			if f.Status != 0 {
				if f.AfterDoing {
					next.ServeHTTP(httptest.NewRecorder(), r)
				}
				if f.Status == http.StatusTooManyRequests {
					w.Header().Set("Retry-After", strconv.Itoa(max(f.RetryAfter, 0)))
				}
				writeProblem(w, f.Status, f.detail())
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// rateLimit counts the request in the current fixed window and writes the
// headers; it reports whether the budget is spent.
func (s *Server) rateLimit(w http.ResponseWriter, now time.Time) (bool, int) {
	q := s.opt.Quota
	if q <= 0 {
		return false, 0
	}
	win := s.opt.Window
	start := s.started.Add(now.Sub(s.started).Truncate(win))
	if !start.Equal(s.window.start) {
		s.window = rateWindow{start: start}
	}
	reset := int((start.Add(win).Sub(now) + time.Second - 1) / time.Second)
	name := "minute"
	w.Header().Set("RateLimit-Policy", fmt.Sprintf("%q;q=%d;w=%d", name, q, int(win/time.Second)))
	if s.window.count >= q {
		s.stats.OverBudget++
		w.Header().Set("RateLimit", fmt.Sprintf("%q;r=0;t=%d", name, reset))
		return true, max(reset, 1)
	}
	s.window.count++
	s.stats.MaxInWindow = max(s.stats.MaxInWindow, s.window.count)
	w.Header().Set("RateLimit", fmt.Sprintf("%q;r=%d;t=%d", name, q-s.window.count, reset))
	return false, 0
}

// route names a request by its pattern for the call counters and faults.
func route(r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == "/v2/pods":
		return r.Method + " /v2/pods"
	case strings.HasPrefix(p, "/v2/pods/") && strings.HasSuffix(p, "/action"):
		return r.Method + " /v2/pods/{id}/action"
	case strings.HasPrefix(p, "/v2/pods/"):
		return r.Method + " /v2/pods/{id}"
	}
	return r.Method + " " + p
}

// Route keys for Stats.Calls and Fault.Route.
const (
	RouteCreate  = "POST /v2/pods"
	RouteList    = "GET /v2/pods"
	RouteGet     = "GET /v2/pods/{id}"
	RouteDelete  = "DELETE /v2/pods/{id}"
	RouteAction  = "POST /v2/pods/{id}/action"
	RouteCatalog = "GET /v2/catalog/gpus"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeProblem(w http.ResponseWriter, status int, detail string, errs ...string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(runpod.Problem{Title: http.StatusText(status), Status: status, Detail: detail, Errors: errs})
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Calls = make(map[string]int, len(s.stats.Calls))
	for k, v := range s.stats.Calls {
		st.Calls[k] = v
	}
	return st
}

// Creates returns every create that reached the endpoint, in order.
func (s *Server) Creates() []CreateRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.creates)
}

// PodInfo is what a test sees of one pod.
type PodInfo struct {
	ID, Name, Status, GPU, DataCenter string
	Env                               map[string]string
	Created                           time.Time
	Ended                             *time.Time
	Billed                            float64
	// Deleted: ended by DELETE or terminate; Vanished: forgotten by script.
	Deleted, Vanished bool
}

// Pods returns every pod the fake ever created, in creation order.
func (s *Server) Pods() []PodInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stepLocked(s.opt.Clock.Now())
	out := make([]PodInfo, 0, len(s.order))
	for _, id := range s.order {
		p := s.pods[id]
		pi := PodInfo{ID: p.ID, Name: p.Name, Status: p.Status, Env: p.Env, Created: p.created, Ended: p.ended,
			Billed: p.billed, Deleted: p.deleted, Vanished: p.vanished}
		if p.GPU != nil {
			pi.GPU = p.GPU.ID
		}
		if p.DataCenterID != nil {
			pi.DataCenter = *p.DataCenterID
		}
		out = append(out, pi)
	}
	return out
}

// Live returns the pods that are not ended (they are billed).
func (s *Server) Live() []PodInfo {
	var out []PodInfo
	for _, p := range s.Pods() {
		if p.Ended == nil && !p.Vanished {
			out = append(out, p)
		}
	}
	return out
}

// Step evaluates every pod against the clock (starting agents for pods
// that reached RUNNING). Requests step too.
func (s *Server) Step() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stepLocked(s.opt.Clock.Now())
}

// Run steps every interval until ctx ends.
func (s *Server) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Step()
		}
	}
}

func (s *Server) stepLocked(now time.Time) {
	for _, id := range s.order {
		p := s.pods[id]
		s.bill(p, now)
		if p.ended != nil || p.vanished {
			continue
		}
		prev := p.Status
		switch {
		case p.forced != "":
			p.Status = p.forced
		case p.stuck:
			p.Status = runpod.StatusProvisioning
		case now.Sub(p.created) < s.opt.ProvisionTime:
			p.Status = runpod.StatusProvisioning
		case now.Sub(p.created) < s.opt.ProvisionTime+s.opt.StartTime:
			p.Status = runpod.StatusStarting
		default:
			p.Status = runpod.StatusRunning
		}
		p.Actions = actionsFor(p.Status)
		if p.Status == runpod.StatusRunning && prev != runpod.StatusRunning {
			t := now
			p.StartedAt = &t
			if s.agents != nil {
				s.agents.start(p.ID, p.Env)
			}
		}
		if p.Status == runpod.StatusExited || p.Status == runpod.StatusError {
			t := now
			p.ended = &t
			zero := 0.0
			p.Cost = &zero
			if s.agents != nil {
				s.agents.stop(p.ID)
			}
		}
	}
}

// bill adds the cost of p from its last bill to now (or to its end).
func (s *Server) bill(p *pod, now time.Time) {
	until := now
	if p.ended != nil && p.ended.Before(until) {
		until = *p.ended
	}
	if until.After(p.billedUntil) {
		p.billed += p.price * until.Sub(p.billedUntil).Hours()
		p.billedUntil = until
	}
}

func actionsFor(status string) []string {
	switch status {
	case runpod.StatusProvisioning, runpod.StatusStarting:
		return []string{"stop", "terminate"}
	case runpod.StatusRunning:
		return []string{"stop", "restart", "terminate"}
	case runpod.StatusExited, runpod.StatusError:
		return []string{"start", "terminate"}
	}
	return []string{}
}

func (s *Server) gpu(id string) *GPU {
	for i := range s.opt.GPUs {
		if s.opt.GPUs[i].ID == id {
			return &s.opt.GPUs[i]
		}
	}
	return nil
}
