package runpod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/provider"
)

// Name is the provider name in drover.yaml.
const Name = "runpod"

// Env keys Drover sets on every pod besides the pool's env.
const (
	EnvCluster = "DROVER_CLUSTER"
	EnvPool    = "DROVER_POOL"
	EnvExec    = "DROVER_EXEC"
)

// DefaultAccountBlock is how long a 402 or 401 stops every create before
// one probe goes to RunPod again.
const DefaultAccountBlock = time.Minute

// Pool is what the provider needs to know about one RunPod pool.
type Pool struct {
	// Image is the container image; Template a RunPod template id (one of
	// them is required).
	Image    string
	Template string
	// GPUCount is the GPUs per pod (default 1).
	GPUCount int
	// Cloud is SECURE or COMMUNITY when a candidate does not say.
	Cloud string
	// Disk is the container disk in GB (0: RunPod's default).
	Disk int
	// NetworkVolume and MountPath mount a network volume.
	NetworkVolume, MountPath string
	// Registry is a registry credential id for private images.
	Registry string
	// Ports are exposed ports ("8888/http"); none unless configured.
	Ports []string
	// MinCudaVersion is the host's lowest acceptable CUDA ("12.1").
	MinCudaVersion string
	// Exec is the handler command, passed as DROVER_EXEC.
	Exec string
}

// Options configure the provider.
type Options struct {
	Client *Client
	// Cluster names this Drover deployment: pods are named
	// drover-<cluster>-<worker id> and tagged DROVER_CLUSTER=<cluster>.
	Cluster string
	Pools   map[string]Pool
	// AccountBlock: see DefaultAccountBlock.
	AccountBlock time.Duration
	Logger       *slog.Logger
}

// Provider rents RunPod pods. Safe for concurrent use.
type Provider struct {
	c       *Client
	opt     Options
	prefix  string
	log     *slog.Logger
	catalog *Catalog

	mu           sync.Mutex
	blockedUntil time.Time
	blockErr     error
}

var _ provider.Provider = (*Provider)(nil)

// New returns a provider.
func New(opt Options) (*Provider, error) {
	if opt.Client == nil {
		return nil, errors.New("runpod provider: a client is required")
	}
	if opt.Cluster == "" {
		return nil, errors.New("runpod provider: a cluster name is required")
	}
	if opt.AccountBlock <= 0 {
		opt.AccountBlock = DefaultAccountBlock
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Provider{
		c: opt.Client, opt: opt, prefix: "drover-" + opt.Cluster + "-",
		log: opt.Logger.With("provider", Name), catalog: NewCatalog(opt.Client, 0),
	}, nil
}

// Name returns "runpod".
func (p *Provider) Name() string { return Name }

// Client returns the API client.
func (p *Provider) Client() *Client { return p.c }

// PodName returns the name of a worker's pod.
func (p *Provider) PodName(workerID string) string { return p.prefix + workerID }

// BuildRequest returns the create body for req.
func (p *Provider) BuildRequest(req *provider.CreateRequest) (*CreatePodRequest, error) {
	pool, ok := p.opt.Pools[req.Pool]
	if !ok {
		return nil, provider.NewError("create", provider.KindInvalid, "pool %q is not a runpod pool", req.Pool)
	}
	if req.Placement.GPU == "" {
		return nil, provider.NewError("create", provider.KindInvalid, "pool %q: the candidate has no gpu", req.Pool)
	}
	env := make(map[string]string, len(req.Env)+3)
	maps.Copy(env, req.Env)
	env[EnvCluster] = p.opt.Cluster
	env[EnvPool] = req.Pool
	if pool.Exec != "" {
		env[EnvExec] = pool.Exec
	}
	body := &CreatePodRequest{
		Name:       p.PodName(req.WorkerID),
		Image:      pool.Image,
		TemplateID: pool.Template,
		GPU:        &CreateGPU{ID: req.Placement.GPU, Count: max(pool.GPUCount, 1), MinCudaVersion: pool.MinCudaVersion},
		Env:        env,
		Ports:      pool.Ports,
	}
	if req.Image != "" && pool.Template == "" {
		body.Image = req.Image
	}
	if c := strings.ToUpper(req.Placement.Cloud); c != "" {
		body.Cloud = c
	} else if pool.Cloud != "" {
		body.Cloud = strings.ToUpper(pool.Cloud)
	}
	if req.Placement.Region != "" {
		body.DataCenterIDs = []string{req.Placement.Region}
	}
	if pool.Disk > 0 {
		body.Disk = new(pool.Disk)
	}
	if pool.NetworkVolume != "" {
		path := pool.MountPath
		if path == "" {
			path = "/runpod-volume"
		}
		body.Mounts = &Mounts{Network: []NetworkMount{{VolumeID: pool.NetworkVolume, Path: path}}}
	}
	if pool.Registry != "" {
		body.Registry = new(pool.Registry)
	}
	return body, nil
}

// Create creates one pod. A 5xx or a timeout may have created it anyway,
// so before another try the pod is looked for by name: a spawn never makes
// two pods. After a 402 or 401 every create fails at once, without a call,
// for AccountBlock.
func (p *Provider) Create(ctx context.Context, req *provider.CreateRequest) (*provider.Instance, error) {
	body, err := p.BuildRequest(req)
	if err != nil {
		return nil, err
	}
	if err := p.accountBlocked(); err != nil {
		return nil, err
	}
	var last error
	for attempt := 1; attempt <= p.c.opt.MaxAttempts; attempt++ {
		pod, err := p.c.CreatePod(ctx, body)
		if err == nil {
			return p.instance(pod), nil
		}
		last = err
		if AccountWide(err) {
			p.blockAccount(err)
			return nil, err
		}
		if !ambiguous(err) {
			return nil, err
		}
		if ctx.Err() != nil {
			// The call's deadline ended it, maybe with the request sent.
			return nil, maybeCreated(err, "the call ended before an answer")
		}
		if err := p.c.opt.Sleep(ctx, p.c.backoff(attempt)); err != nil {
			return nil, maybeCreated(last, "stopped before the pod could be looked for")
		}
		pods, lerr := p.c.ListPods(ctx)
		if lerr != nil {
			// Another create could make a second pod, and no answer says
			// there is none: the caller keeps the spawn open for the next
			// good list.
			return nil, maybeCreated(last, fmt.Sprintf("the pod could not be looked for (%v)", lerr))
		}
		for i := range pods {
			if pods[i].Name == body.Name && pods[i].Status != StatusTerminated {
				return p.instance(&pods[i]), nil
			}
		}
	}
	return nil, last
}

// maybeCreated marks an ambiguous create error whose pod may exist: see
// provider.Error.MaybeCreated.
func maybeCreated(err error, why string) error {
	return &provider.Error{Op: "create", Kind: provider.KindOf(err), MaybeCreated: true,
		Message: "outcome unknown, " + why, Err: err}
}

// ambiguous reports whether a create error may have created the pod
// anyway: a 5xx answer or no answer at all.
func ambiguous(err error) bool {
	if e, ok := errors.AsType[*APIError](err); ok {
		return e.Status >= 500
	}
	return provider.KindOf(err) == provider.KindTransient
}

func (p *Provider) accountBlocked() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blockErr != nil && p.c.opt.Now().Before(p.blockedUntil) {
		return &APIError{Status: p.blockErr.(*APIError).Status, Err: &provider.Error{
			Op: "create", Kind: provider.KindQuota, AccountWide: true,
			Message: fmt.Sprintf("not sent: RunPod refused the account until %s: %s", p.blockedUntil.UTC().Format(time.TimeOnly), p.blockErr.(*APIError).Err.Message),
		}}
	}
	return nil
}

func (p *Provider) blockAccount(err error) {
	ae, ok := errors.AsType[*APIError](err)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blockedUntil = p.c.opt.Now().Add(p.opt.AccountBlock)
	p.blockErr = ae
	what := "insufficient balance (402)"
	if ae.Status == http.StatusUnauthorized {
		what = "API key refused (401)"
	}
	p.log.Error("RunPod refused the account: every RunPod placement is blocked", "reason", what,
		"for", p.opt.AccountBlock, "err", ae.Err.Message)
}

// Get returns one pod.
func (p *Provider) Get(ctx context.Context, id string) (*provider.Instance, error) {
	pod, err := p.c.GetPod(ctx, id)
	if err != nil {
		return nil, err
	}
	return p.instance(pod), nil
}

// List returns this deployment's pods (name prefix and DROVER_CLUSTER tag
// both match), TERMINATED ones left out. A failed call is an error, never
// an empty list.
func (p *Provider) List(ctx context.Context) ([]*provider.Instance, error) {
	pods, err := p.c.ListPods(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*provider.Instance, 0, len(pods))
	for i := range pods {
		pod := &pods[i]
		if !p.Owns(pod) || pod.Status == StatusTerminated {
			continue
		}
		out = append(out, p.instance(pod))
	}
	return out, nil
}

// Owns reports whether pod belongs to this deployment.
func (p *Provider) Owns(pod *Pod) bool {
	return strings.HasPrefix(pod.Name, p.prefix) && pod.Env[EnvCluster] == p.opt.Cluster
}

// Delete terminates a pod (204). A 404 returns an error matching
// provider.ErrNotFound: the pod is gone, which is what was wanted.
func (p *Provider) Delete(ctx context.Context, id string) error {
	return p.c.DeletePod(ctx, id)
}

// instance maps a pod onto a provider instance.
func (p *Provider) instance(pod *Pod) *provider.Instance {
	in := &provider.Instance{ID: pod.ID, State: MapStatus(pod.Status)}
	if strings.HasPrefix(pod.Name, p.prefix) {
		in.WorkerID = strings.TrimPrefix(pod.Name, p.prefix)
	}
	in.Pool = pod.Env[EnvPool]
	if pod.GPU != nil {
		in.Placement.GPU = pod.GPU.ID
	}
	if pod.DataCenterID != nil {
		in.Placement.Region = *pod.DataCenterID
	}
	in.Placement.Cloud = pod.Cloud
	if pod.Cost != nil {
		in.PricePerHour = *pod.Cost
	}
	if pod.CreatedAt != nil {
		in.CreatedAt = *pod.CreatedAt
	}
	in.Exited = pod.Status == StatusExited || pod.Status == StatusError
	if in.Exited {
		in.ExitDetail = "RunPod status " + pod.Status
	}
	return in
}

// MapStatus maps a v2 pod status onto an instance state.
func MapStatus(s string) provider.InstanceState {
	switch s {
	case StatusProvisioning, StatusStarting:
		return provider.InstancePending
	case StatusRunning:
		return provider.InstanceRunning
	default: // EXITED, ERROR, TERMINATED and anything unknown
		return provider.InstanceGone
	}
}
