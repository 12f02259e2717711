package fakerunpod

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/droverhq/drover/internal/provider/runpod"
)

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	for k := range r.URL.Query() {
		if k != "includeClusterPods" {
			writeProblem(w, http.StatusUnprocessableEntity, "Request validation failed.", fmt.Sprintf("query: unknown parameter %q", k))
			return
		}
	}
	s.mu.Lock()
	s.stepLocked(s.opt.Clock.Now())
	out := struct {
		Pods []podJSON `json:"pods"`
	}{Pods: []podJSON{}}
	for _, id := range s.order {
		p := s.pods[id]
		if p.vanished || p.deleted {
			continue
		}
		out.Pods = append(out.Pods, s.view(p))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// view is the pod as the API shows it.
func (s *Server) view(p *pod) podJSON {
	v := podJSON{Pod: p.Pod, Disk: 50, Mounts: map[string]any{}, Ports: []string{}, Env: map[string]string{},
		SSH:              map[string]any{"proxy": map[string]any{"host": "ssh.runpod.io", "port": 22, "username": p.ID}, "direct": nil},
		GlobalNetworking: map[string]bool{"enabled": false}}
	for k, val := range p.Env {
		v.Env[k] = val
	}
	v.Pod.Env = nil
	v.Actions = slices.Clone(p.Actions)
	if r := p.req; r != nil {
		v.Args, v.Registry = r.Args, r.Registry
		if r.Disk != nil {
			v.Disk = *r.Disk
		}
		if len(r.Ports) > 0 {
			v.Ports = slices.Clone(r.Ports)
		}
		if r.Mounts != nil && len(r.Mounts.Network) > 0 {
			v.Mounts["network"] = r.Mounts.Network
		}
		if r.TemplateID != "" {
			v.Template = &r.TemplateID
		}
	}
	if p.Status == runpod.StatusRunning {
		v.Runtime = map[string]any{"uptime": 0, "gpus": []any{}, "ports": []any{}}
	}
	return v
}

func (s *Server) lookup(id string) *pod {
	p := s.pods[id]
	if p == nil || p.vanished || p.deleted {
		return nil
	}
	return p
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stepLocked(s.opt.Clock.Now())
	p := s.lookup(r.PathValue("id"))
	var v podJSON
	if p != nil {
		v = s.view(p)
	}
	s.mu.Unlock()
	if p == nil {
		writeProblem(w, http.StatusNotFound, "pod not found")
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	if !s.terminate(r.PathValue("id")) {
		writeProblem(w, http.StatusNotFound, "pod not found")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// terminate ends a pod; false when there is none.
func (s *Server) terminate(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opt.Clock.Now()
	s.stepLocked(now)
	p := s.lookup(id)
	if p == nil {
		return false
	}
	s.bill(p, now)
	if p.ended == nil {
		p.ended = &now
	}
	p.deleted = true
	p.Status = runpod.StatusTerminated
	zero := 0.0
	p.Cost = &zero
	if s.agents != nil {
		s.agents.stop(id)
	}
	return true
}

func (s *Server) handleAction(w http.ResponseWriter, r *http.Request) {
	var body map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeProblem(w, http.StatusUnprocessableEntity, "Request validation failed.", "$: body is not a JSON object")
		return
	}
	for k := range body {
		if k != "action" {
			writeProblem(w, http.StatusUnprocessableEntity, "Request validation failed.", fmt.Sprintf("$: additional properties '%s' not allowed", k))
			return
		}
	}
	var action string
	_ = json.Unmarshal(body["action"], &action)
	if !slices.Contains([]string{"start", "stop", "restart", "terminate"}, action) {
		writeProblem(w, http.StatusUnprocessableEntity, "Request validation failed.", "$.action: value must be one of 'start', 'stop', 'restart', 'terminate'")
		return
	}
	id := r.PathValue("id")
	if action == "terminate" {
		if !s.terminate(id) {
			writeProblem(w, http.StatusNotFound, "pod not found")
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.mu.Lock()
	p := s.lookup(id)
	if p == nil {
		s.mu.Unlock()
		writeProblem(w, http.StatusNotFound, "pod not found")
		return
	}
	ok := slices.Contains(p.Actions, action)
	v := s.view(p)
	s.mu.Unlock()
	if !ok {
		writeProblem(w, http.StatusConflict, fmt.Sprintf("action %q is not valid for a pod in status %s", action, v.Status))
		return
	}
	// start/stop/restart are not used by Drover; they answer the pod as is.
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleCatalog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	withAvail := q.Get("include") == "AVAILABILITY"
	if withAvail && q.Get("product") == "" {
		writeProblem(w, http.StatusBadRequest, "include=AVAILABILITY requires product")
		return
	}
	s.mu.Lock()
	out := runpod.ListGPUTypesResponse{GPUs: []runpod.GPUType{}}
	for _, g := range s.opt.GPUs {
		gt := runpod.GPUType{ID: g.ID, Name: strings.TrimPrefix(g.ID, "NVIDIA "), Secure: true, Community: true}
		if withAvail {
			gt.Availability = g.Availability
			for _, dc := range g.DataCenters {
				a := g.Availability
				if s.script.capacityLeft(g.ID, dc) {
					a = "NONE"
				}
				gt.DataCenters = append(gt.DataCenters, runpod.DataCenterAvailability{ID: dc, Availability: a})
			}
		}
		out.GPUs = append(out.GPUs, gt)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}
