package fakerunpod

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/droverhq/drover/internal/provider/runpod"
)

// createFields are the properties CreatePodRequest allows (the spec's
// unevaluatedProperties: false rejects every other one).
var createFields = []string{
	"name", "image", "templateId", "gpu", "cpu", "cloud", "dataCenterIds", "mounts", "disk", "ports", "env",
	"args", "registry", "globalNetworking", "startSsh", "startJupyter",
}

var gpuFields = []string{"id", "count", "allowedCudaVersions", "minCudaVersion"}

var cudaRE = regexp.MustCompile(`^\d+\.\d+$`)

// validateCreate checks a create body against the spec and returns the
// request-validation errors (422) or a rule violation (400).
func validateCreate(raw []byte) (*runpod.CreatePodRequest, []string, string) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, []string{"$: body must be a JSON object"}, ""
	}
	var errs []string
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(createFields, k) {
			errs = append(errs, fmt.Sprintf("$: additional properties '%s' not allowed", k))
		}
	}
	var req runpod.CreatePodRequest
	str := func(key string, dst *string) {
		if v, ok := m[key]; ok {
			if json.Unmarshal(v, dst) != nil {
				errs = append(errs, fmt.Sprintf("$.%s: got %s, want string", key, kindOf(v)))
			}
		}
	}
	if _, ok := m["name"]; !ok {
		errs = append(errs, "$: missing property 'name'")
	} else {
		str("name", &req.Name)
		if req.Name == "" && len(errs) == 0 {
			errs = append(errs, "$.name: length must be >= 1, but got 0")
		}
	}
	str("image", &req.Image)
	str("templateId", &req.TemplateID)
	str("cloud", &req.Cloud)
	str("args", &req.Args)
	if _, ok := m["cloud"]; ok && req.Cloud != "SECURE" && req.Cloud != "COMMUNITY" {
		errs = append(errs, "$.cloud: value must be one of 'SECURE', 'COMMUNITY'")
	}
	if v, ok := m["gpu"]; ok {
		var g map[string]json.RawMessage
		if json.Unmarshal(v, &g) != nil || g == nil {
			errs = append(errs, "$.gpu: got "+kindOf(v)+", want object")
		} else {
			for k := range g {
				if !slices.Contains(gpuFields, k) {
					errs = append(errs, fmt.Sprintf("$.gpu: additional properties '%s' not allowed", k))
				}
			}
			req.GPU = &runpod.CreateGPU{Count: 1}
			if id, ok := g["id"]; !ok || json.Unmarshal(id, &req.GPU.ID) != nil {
				errs = append(errs, "$.gpu: missing property 'id'")
			}
			if c, ok := g["count"]; ok && (json.Unmarshal(c, &req.GPU.Count) != nil || req.GPU.Count < 1) {
				errs = append(errs, "$.gpu.count: must be an integer >= 1")
			}
			if c, ok := g["minCudaVersion"]; ok && (json.Unmarshal(c, &req.GPU.MinCudaVersion) != nil || !cudaRE.MatchString(req.GPU.MinCudaVersion)) {
				errs = append(errs, "$.gpu.minCudaVersion: does not match pattern '^\\d+\\.\\d+$'")
			}
		}
	}
	if v, ok := m["dataCenterIds"]; ok && json.Unmarshal(v, &req.DataCenterIDs) != nil {
		errs = append(errs, "$.dataCenterIds: want array of strings")
	}
	if v, ok := m["disk"]; ok {
		var d int
		if json.Unmarshal(v, &d) != nil || d < 1 {
			errs = append(errs, "$.disk: must be an integer >= 1")
		}
		req.Disk = &d
	}
	if v, ok := m["ports"]; ok && json.Unmarshal(v, &req.Ports) != nil {
		errs = append(errs, "$.ports: want array of strings")
	}
	if v, ok := m["env"]; ok && json.Unmarshal(v, &req.Env) != nil {
		errs = append(errs, "$.env: want object of strings")
	}
	if v, ok := m["registry"]; ok && string(v) != "null" {
		var r string
		if json.Unmarshal(v, &r) != nil {
			errs = append(errs, "$.registry: want string or null")
		}
		req.Registry = &r
	}
	if v, ok := m["mounts"]; ok {
		var mo map[string]json.RawMessage
		if json.Unmarshal(v, &mo) != nil {
			errs = append(errs, "$.mounts: want object")
		}
		for k := range mo {
			if k != "network" && k != "persistent" {
				errs = append(errs, fmt.Sprintf("$.mounts: additional properties '%s' not allowed", k))
			}
		}
		if nv, ok := mo["network"]; ok {
			var ns []map[string]string
			if json.Unmarshal(nv, &ns) != nil || len(ns) > 1 {
				errs = append(errs, "$.mounts.network: want at most 1 {volumeId, path}")
			}
			for _, n := range ns {
				if n["volumeId"] == "" || n["path"] == "" {
					errs = append(errs, "$.mounts.network[0]: missing property 'volumeId' or 'path'")
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs, ""
	}
	_, hasCPU := m["cpu"]
	switch {
	case req.GPU == nil && !hasCPU, req.GPU != nil && hasCPU:
		return nil, nil, "exactly one of gpu or cpu must be set"
	case hasCPU:
		return nil, nil, "cpu pods are not offered by this fake"
	case req.Image == "" && req.TemplateID == "":
		return nil, nil, "image is required unless templateId is set"
	}
	return &req, nil, ""
}

func kindOf(v json.RawMessage) string {
	s := strings.TrimSpace(string(v))
	switch {
	case s == "null":
		return "null"
	case strings.HasPrefix(s, "\""):
		return "string"
	case strings.HasPrefix(s, "{"):
		return "object"
	case strings.HasPrefix(s, "["):
		return "array"
	case s == "true" || s == "false":
		return "boolean"
	}
	return "number"
}

// capacityDetail is RunPod's recorded capacity 400.
const capacityDetail = "There are no longer any instances available with the requested specifications. Please refresh and try again."

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "could not read body")
		return
	}
	req, errs, rule := validateCreate(raw)
	s.mu.Lock()
	s.stats.CreateAttempts++
	s.mu.Unlock()
	if len(errs) > 0 {
		writeProblem(w, http.StatusUnprocessableEntity, "Request validation failed.", errs...)
		return
	}
	if rule != "" {
		writeProblem(w, http.StatusBadRequest, rule)
		return
	}
	if req.TemplateID != "" && req.TemplateID != "tpl-drover" {
		writeProblem(w, http.StatusNotFound, "template not found")
		return
	}
	s.mu.Lock()
	status, v, detail := s.createLocked(req)
	s.creates = append(s.creates, CreateRecord{Time: s.opt.Clock.Now(), Name: req.Name, GPU: req.GPU.ID,
		DataCenters: slices.Clone(req.DataCenterIDs), Status: status})
	s.mu.Unlock()
	if status != http.StatusCreated {
		writeProblem(w, status, detail)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

// createLocked places and records a pod, or returns the error status and
// detail.
func (s *Server) createLocked(req *runpod.CreatePodRequest) (int, podJSON, string) {
	if st := s.script.account; st != 0 {
		f := Fault{Status: st}
		return st, podJSON{}, f.detail()
	}
	g := s.gpu(req.GPU.ID)
	if g == nil {
		return http.StatusBadRequest, podJSON{}, fmt.Sprintf("gpu type %q does not exist", req.GPU.ID)
	}
	dcs := req.DataCenterIDs
	if len(dcs) == 0 {
		dcs = g.DataCenters
	}
	dc := ""
	for _, d := range dcs {
		if !slices.Contains(g.DataCenters, d) || s.script.useCapacity(g.ID, d) {
			continue
		}
		dc = d
		break
	}
	if dc == "" {
		return http.StatusBadRequest, podJSON{}, capacityDetail
	}
	now := s.opt.Clock.Now()
	s.nextID++
	id := fmt.Sprintf("fk%08d", s.nextID)
	price := g.Price * float64(req.GPU.Count)
	cloud := req.Cloud
	if cloud == "" {
		cloud = "SECURE"
	}
	created := now
	p := &pod{
		Pod: runpod.Pod{
			ID: id, Name: req.Name, Status: runpod.StatusProvisioning, Actions: actionsFor(runpod.StatusProvisioning),
			Image: req.Image, Env: req.Env, GPU: &runpod.PodGPU{ID: g.ID, Count: req.GPU.Count}, Cloud: cloud,
			DataCenterID: &dc, Cost: &price, CreatedAt: &created,
		},
		req: req, created: now, billedUntil: now, price: price,
		stuck: slices.Contains(s.script.stuck, g.ID),
	}
	if p.Env == nil {
		p.Env = map[string]string{}
	}
	s.pods[id] = p
	s.order = append(s.order, id)
	s.stats.Created++
	return http.StatusCreated, s.view(p), ""
}
