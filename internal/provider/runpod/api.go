package runpod

import "time"

// The REST v2 wire types Drover sends and reads. Optional fields are
// pointers or omitempty so that what is absent is sent as absent and read
// as unknown.

// CreatePodRequest is the body of POST /v2/pods (the fields Drover uses).
type CreatePodRequest struct {
	Name          string            `json:"name"`
	Image         string            `json:"image,omitempty"`
	TemplateID    string            `json:"templateId,omitempty"`
	GPU           *CreateGPU        `json:"gpu,omitempty"`
	Cloud         string            `json:"cloud,omitempty"`
	DataCenterIDs []string          `json:"dataCenterIds,omitempty"`
	Disk          *int              `json:"disk,omitempty"`
	Mounts        *Mounts           `json:"mounts,omitempty"`
	Ports         []string          `json:"ports,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	Args          string            `json:"args,omitempty"`
	Registry      *string           `json:"registry,omitempty"`
}

// CreateGPU is the gpu object of a create request.
type CreateGPU struct {
	ID             string `json:"id"`
	Count          int    `json:"count,omitempty"`
	MinCudaVersion string `json:"minCudaVersion,omitempty"`
}

// Mounts is a pod's storage: at most one network volume here.
type Mounts struct {
	Network []NetworkMount `json:"network,omitempty"`
}

// NetworkMount attaches a network volume.
type NetworkMount struct {
	VolumeID string `json:"volumeId"`
	Path     string `json:"path"`
}

// Pod is a v2 Pod as Drover reads it.
type Pod struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Status       string            `json:"status"`
	Actions      []string          `json:"actions,omitempty"`
	Image        string            `json:"image,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	GPU          *PodGPU           `json:"gpu,omitempty"`
	Cloud        string            `json:"cloud,omitempty"`
	DataCenterID *string           `json:"dataCenterId"`
	CudaVersion  *string           `json:"cudaVersion"`
	// Cost is USD per hour; nil when absent (unknown, not free).
	Cost      *float64   `json:"cost,omitempty"`
	CreatedAt *time.Time `json:"createdAt,omitempty"`
	StartedAt *time.Time `json:"startedAt"`
}

// PodGPU is a pod's gpu object.
type PodGPU struct {
	ID    string `json:"id"`
	Count int    `json:"count"`
}

// ListPodsResponse is GET /v2/pods: the pods are wrapped.
type ListPodsResponse struct {
	Pods []Pod `json:"pods"`
}

// Problem is an RFC 9457 error body.
type Problem struct {
	Title  string   `json:"title"`
	Status int      `json:"status"`
	Detail string   `json:"detail"`
	Errors []string `json:"errors,omitempty"`
}

// GPUType is one entry of GET /v2/catalog/gpus.
type GPUType struct {
	ID           string                   `json:"id"`
	Name         string                   `json:"name"`
	Memory       int                      `json:"memory"`
	Secure       bool                     `json:"secure"`
	Community    bool                     `json:"community"`
	Availability string                   `json:"availability,omitempty"`
	DataCenters  []DataCenterAvailability `json:"dataCenters,omitempty"`
}

// DataCenterAvailability is the stock of a GPU type in one data center.
type DataCenterAvailability struct {
	ID           string `json:"id"`
	Name         string `json:"name,omitempty"`
	Availability string `json:"availability"`
}

// ListGPUTypesResponse is GET /v2/catalog/gpus.
type ListGPUTypesResponse struct {
	GPUs []GPUType `json:"gpus"`
}

// Pod statuses (v2 PodStatus).
const (
	StatusProvisioning = "PROVISIONING"
	StatusStarting     = "STARTING"
	StatusRunning      = "RUNNING"
	StatusExited       = "EXITED"
	StatusError        = "ERROR"
	StatusTerminated   = "TERMINATED"
)
