package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/droverhq/drover/internal/provider/runpod"
)

// RunPodPoolConfig holds the RunPod-only settings of a pool (the `runpod:`
// block of a pool whose provider is runpod). See docs/runpod.md.
type RunPodPoolConfig struct {
	// Template is a RunPod template id; the pool's image (if any)
	// overrides the template's.
	Template string `yaml:"template"`
	// GPUCount is the GPUs per pod (default 1).
	GPUCount int `yaml:"gpu_count"`
	// Cloud is SECURE (default) or COMMUNITY for candidates that do not
	// name one.
	Cloud string `yaml:"cloud"`
	// Disk is the container disk in GB, a whole number ("50").
	Disk string `yaml:"disk"`
	// NetworkVolume is a network volume id mounted at MountPath
	// (default /runpod-volume).
	NetworkVolume string `yaml:"network_volume"`
	MountPath     string `yaml:"mount_path"`
	// Registry is a container registry credential id (private images).
	Registry string `yaml:"registry"`
	// Ports are exposed ports such as "8888/http"; none by default.
	Ports []string `yaml:"ports"`
	// MinCudaVersion is the lowest CUDA the host must have ("12.1").
	MinCudaVersion string `yaml:"min_cuda_version"`
	// CandidatesOrder is "config" (default: the order written) or
	// "availability" (re-ordered by the catalog's stock every few minutes).
	CandidatesOrder string `yaml:"candidates_order"`
}

// Limits of the RunPod pool settings.
const (
	MaxRunPodGPUCount = 8
	MaxRunPodDiskGB   = 10000
)

var (
	clusterRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$`)
	portRE    = regexp.MustCompile(`^[0-9]{1,5}/(http|tcp|udp)$`)
	cudaRE    = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)
)

// ClusterName returns the name of this deployment at shared providers:
// the `cluster` field, else "d" and 8 hex digits of a hash of the database
// URL without its credentials (stable across restarts and replicas of one
// deployment, different between deployments).
func (c *Config) ClusterName() string {
	if c.Cluster != "" {
		return c.Cluster
	}
	db := c.Database
	if u, err := url.Parse(db); err == nil && u.User != nil {
		u.User = nil
		db = u.String()
	}
	sum := sha256.Sum256([]byte(db))
	return "d" + hex.EncodeToString(sum[:4])
}

// DiskGB returns the pool's container disk in GB (0: RunPod's default).
func (r *RunPodPoolConfig) DiskGB() int {
	if r == nil || r.Disk == "" {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(r.Disk))
	return n
}

// validateRunPod checks the cluster name and every RunPod pool; it adds one
// line per problem.
func (c *Config) validateRunPod(ck *checker) {
	if c.Cluster != "" && !clusterRE.MatchString(c.Cluster) {
		ck.addf("cluster", "must be a DNS label of 1 to 24 characters: lower-case letters, digits and '-' (got %q)", c.Cluster)
	}
	for _, name := range sortedKeys(c.Pools) {
		p := c.Pools[name]
		f := "pools." + name
		if p == nil {
			continue
		}
		if p.Provider != "runpod" {
			if p.RunPod != nil {
				ck.addf(f+".runpod", "is only for pools with provider runpod (this pool's provider is %q)", p.Provider)
			}
			continue
		}
		rp := p.RunPod
		if rp == nil {
			rp = &RunPodPoolConfig{}
		}
		if strings.TrimSpace(p.Image) == "" && strings.TrimSpace(rp.Template) == "" {
			ck.addf(f+".image", "a runpod pool needs an image (or runpod.template, a RunPod template id)")
		}
		if rp.GPUCount < 0 || rp.GPUCount > MaxRunPodGPUCount {
			ck.addf(f+".runpod.gpu_count", "must be between 1 and %d (got %d)", MaxRunPodGPUCount, rp.GPUCount)
		}
		if rp.Cloud != "" && !slices.Contains(runpod.Clouds, strings.ToUpper(rp.Cloud)) {
			ck.addf(f+".runpod.cloud", "must be SECURE or COMMUNITY (got %q); RunPod v2 has no spot/interruptible tier", rp.Cloud)
		}
		if rp.Disk != "" {
			n, err := strconv.Atoi(strings.TrimSpace(rp.Disk))
			if err != nil {
				ck.addf(f+".runpod.disk", "must be a whole number of GB such as 50 (got %q)", rp.Disk)
			} else if n < 1 || n > MaxRunPodDiskGB {
				ck.addf(f+".runpod.disk", "must be between 1 and %d GB (got %d)", MaxRunPodDiskGB, n)
			}
		}
		if rp.MountPath != "" && !strings.HasPrefix(rp.MountPath, "/") {
			ck.addf(f+".runpod.mount_path", "must be an absolute path (got %q)", rp.MountPath)
		}
		if rp.MountPath != "" && rp.NetworkVolume == "" {
			ck.addf(f+".runpod.mount_path", "needs runpod.network_volume")
		}
		for i, port := range rp.Ports {
			if !portRE.MatchString(port) {
				ck.addf(fmt.Sprintf("%s.runpod.ports[%d]", f, i), "must look like 8888/http or 22/tcp (got %q)", port)
			}
		}
		if rp.MinCudaVersion != "" && !cudaRE.MatchString(rp.MinCudaVersion) {
			ck.addf(f+".runpod.min_cuda_version", "must be major.minor such as 12.1 (got %q)", rp.MinCudaVersion)
		}
		if rp.CandidatesOrder != "" && rp.CandidatesOrder != "config" && rp.CandidatesOrder != "availability" {
			ck.addf(f+".runpod.candidates_order", "must be config or availability (got %q)", rp.CandidatesOrder)
		}
		for i, cand := range p.Candidates {
			cf := fmt.Sprintf("%s.candidates[%d]", f, i)
			if cand.GPU != "" && !runpod.KnownGPUType(cand.GPU) {
				ck.addf(cf+".gpu", "unknown RunPod GPU type id %q (ids look like \"NVIDIA GeForce RTX 4090\"; see docs/runpod.md)", cand.GPU)
			}
			for j, r := range cand.Regions {
				if strings.TrimSpace(r) != "" && !strings.Contains(r, "/") && !runpod.ValidDataCenterID(r) {
					ck.addf(fmt.Sprintf("%s.regions[%d]", cf, j), "not a RunPod data center id such as US-TX-3 or EU-RO-1 (got %q)", r)
				}
			}
			if cand.Cloud != "" && !slices.Contains(runpod.Clouds, strings.ToUpper(cand.Cloud)) {
				ck.addf(cf+".cloud", "must be SECURE or COMMUNITY (got %q)", cand.Cloud)
			}
		}
	}
}

// Warnings returns problems that do not stop start-up but deserve a look,
// one line each: a RunPod pool whose workers would reach the server over
// plain http on a non-loopback host (their bearer token travels in clear),
// or at a loopback address pods cannot reach.
func (c *Config) Warnings() []string {
	var out []string
	if !c.usesProvider("runpod") {
		return out
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil {
		return out
	}
	host := u.Hostname()
	loopback := host == "localhost"
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		loopback = true
	}
	switch {
	case loopback:
		out = append(out, fmt.Sprintf("public_url: %s is a loopback address; RunPod pods cannot reach it (set public_url to the server's public https URL)", c.PublicURL))
	case u.Scheme == "http":
		out = append(out, fmt.Sprintf("public_url: %s is plain http to a non-loopback host; RunPod workers send their bearer token over the internet in clear (use https: tls.cert_file/tls.key_file or a TLS reverse proxy)", c.PublicURL))
	}
	return out
}
