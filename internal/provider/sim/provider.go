// Package sim is an in-memory Provider on an injected clock, with scripted
// placements (provisioning and boot times, capacity and quota errors,
// crashes, vanishing and preemption), fault injection for the provider API
// itself and call recording in the style of Karpenter's fake. The simulated
// agents that run on its instances live in internal/sim/simagent. Tests of
// the control loop and the simulator use it; nothing in it sleeps: time is
// whatever the clock says.
//
// # Instance lifecycle
//
// Every instance is evaluated lazily against the clock:
//
//	created ──ProvisionTime──▶ running ──BootTime──▶ agent up (Fleet registers it)
//	running ──CrashAfter──▶ agent dead (instance still running, heartbeats stop)
//	running ──VanishAfter──▶ gone (not listed, Get → ErrNotFound)
//	running ──PreemptAfter──▶ gone, Preempted (Get still returns it)
//	any ──Exit──▶ gone, Exited (still listed, as a stopped pod is, until deleted)
//	any ──Delete──▶ gone
//
// All the "After" durations are measured from the moment the instance
// became running.
package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
)

// Script describes how instances of one placement behave.
type Script struct {
	// ProvisionTime is how long an instance stays pending. ProvisionDist,
	// when set, draws it instead (from the provider's seeded source).
	ProvisionTime time.Duration
	ProvisionDist func(r *rand.Rand) time.Duration
	// BootTime is how long the agent takes to come up once the instance
	// runs. BootDist, when set, draws it instead.
	BootTime time.Duration
	BootDist func(r *rand.Rand) time.Duration
	// CapacityErrors makes the next N creates on the placement fail with
	// a capacity error; CapacityAlways makes every create fail so.
	CapacityErrors int
	CapacityAlways bool
	// MaybeCreatedErrors makes the next N creates on the placement make
	// their instance but answer with a transient error marked
	// MaybeCreated, as a create whose 5xx answer could not be checked.
	MaybeCreatedErrors int
	// CapacityOut, when set, makes creates fail with a capacity error
	// while it returns true for the clock's now (capacity outages).
	CapacityOut func(now time.Time) bool
	// QuotaError makes every create fail with a quota error.
	QuotaError bool
	// InvalidError makes every create fail with an invalid-request error.
	InvalidError bool
	// NeverBoot: the instance runs but its agent never comes up.
	NeverBoot bool
	// NeverBootFraction makes that fraction of instances (drawn at create)
	// never boot.
	NeverBootFraction float64
	// CrashAfter: the agent dies this long after the instance runs
	// (0 = never). The instance keeps running.
	CrashAfter time.Duration
	// CrashDist, when set, draws CrashAfter per instance (a result ≤ 0
	// means never).
	CrashDist func(r *rand.Rand) time.Duration
	// VanishAfter: the instance disappears this long after it runs
	// (0 = never).
	VanishAfter time.Duration
	// PreemptAfter: the provider takes the instance back this long after
	// it runs (0 = never).
	PreemptAfter time.Duration
	// PricePerHour is the instance's price in USD.
	PricePerHour float64
}

// Options configure a Provider.
type Options struct {
	// Name is what Name returns ("sim").
	Name string
	// Seed seeds the random source used by distributions (and the fleet).
	Seed uint64
	// Default is the script of placements without their own SetScript.
	Default Script
	// Latency is recorded as each call's latency; it advances nothing.
	Latency time.Duration
	// Cluster names the Drover deployment this provider works for: every
	// instance it creates is tagged with it, and List, Get and Delete see
	// only instances with the same tag. Cluster returns a view of the same
	// account for another deployment.
	Cluster string
}

// Call is one recorded provider call.
type Call struct {
	Op         string // create, get, list, delete
	Time       time.Time
	Latency    time.Duration
	InstanceID string
	WorkerID   string
	Placement  provider.Placement
	Err        error
}

// instance is the provider's record of one machine.
type instance struct {
	inst      provider.Instance
	runningAt time.Time
	bootAt    time.Time // zero: never boots
	crashAt   time.Time // zero: never crashes
	goneAt    time.Time // zero: not scheduled to disappear
	preempt   bool      // goneAt is a preemption
	deleted   bool
	gone      bool   // removed (vanished, preempted or deleted)
	cluster   string // the deployment that created it
}

// Provider is the in-memory provider, the view of one deployment
// (Options.Cluster) on a simulated cloud account. It is safe for concurrent
// use.
type Provider struct {
	*account
	cluster string
}

// account is the state shared by every deployment's view.
type account struct {
	// NextCreateErr, NextGetErr, NextListErr and NextDeleteErr, when set,
	// are returned (once) by the next call of that kind.
	NextCreateErr error
	NextGetErr    error
	NextListErr   error
	NextDeleteErr error

	clock core.Clock
	opts  Options

	mu        sync.Mutex
	rnd       *rand.Rand
	scripts   map[string]*Script
	instances map[string]*instance
	order     []string
	seq       int
	failList  int
	quotaOut  bool // SetAccountQuota: every create fails, account-wide
	latency   time.Duration
	calls     []Call
}

var _ provider.Provider = (*Provider)(nil)

// New returns an empty provider on clock.
func New(clock core.Clock, opts Options) *Provider {
	if opts.Name == "" {
		opts.Name = "sim"
	}
	return &Provider{account: &account{
		clock:     clock,
		opts:      opts,
		rnd:       rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		scripts:   map[string]*Script{},
		instances: map[string]*instance{},
		latency:   opts.Latency,
	}, cluster: opts.Cluster}
}

// Cluster returns the view of deployment name on the same account: it
// shares instances, scripts and recorded calls with p, but creates
// instances tagged name and lists, gets and deletes only those.
func (p *Provider) Cluster(name string) *Provider {
	return &Provider{account: p.account, cluster: name}
}

// ClusterName returns the deployment this view works for.
func (p *Provider) ClusterName() string { return p.cluster }

// Name implements provider.Provider.
func (p *Provider) Name() string { return p.opts.Name }

// Create implements provider.Provider.
func (p *Provider) Create(ctx context.Context, req *provider.CreateRequest) (*provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	call := Call{Op: "create", WorkerID: req.WorkerID, Placement: req.Placement}
	if err := ctx.Err(); err != nil {
		call.Err = err
		p.record(call)
		return nil, fmt.Errorf("sim create: %w", err)
	}
	if err := takeErr(&p.NextCreateErr); err != nil {
		call.Err = err
		p.record(call)
		return nil, err
	}
	key := req.Placement.Key(req.Pool)
	s := p.script(key)
	var err error
	switch {
	case p.quotaOut:
		err = &provider.Error{Op: "create", Kind: provider.KindQuota, AccountWide: true,
			Message: "insufficient account balance; add funds, then the breakers close after their cooldown"}
	case s.QuotaError:
		err = provider.NewError("create", provider.KindQuota, "insufficient balance for %s", key)
	case s.InvalidError:
		err = provider.NewError("create", provider.KindInvalid, "invalid request for %s", key)
	case s.CapacityAlways:
		err = provider.NewError("create", provider.KindCapacity, "no instances available for gpu %q in region %q", req.Placement.GPU, req.Placement.Region)
	case s.CapacityOut != nil && s.CapacityOut(p.clock.Now()):
		err = provider.NewError("create", provider.KindCapacity, "no instances available for gpu %q in region %q", req.Placement.GPU, req.Placement.Region)
	case s.CapacityErrors > 0:
		s.CapacityErrors--
		err = provider.NewError("create", provider.KindCapacity, "no instances available for gpu %q in region %q", req.Placement.GPU, req.Placement.Region)
	}
	if err != nil {
		call.Err = err
		p.record(call)
		return nil, err
	}

	now := p.clock.Now()
	p.seq++
	id := fmt.Sprintf("sim-%06d", p.seq)
	provision := s.ProvisionTime
	if s.ProvisionDist != nil {
		provision = max(0, s.ProvisionDist(p.rnd))
	}
	in := &instance{cluster: p.cluster, inst: provider.Instance{
		ID:           id,
		WorkerID:     req.WorkerID,
		Pool:         req.Pool,
		Placement:    req.Placement,
		State:        provider.InstancePending,
		PricePerHour: s.PricePerHour,
		CreatedAt:    now,
	}}
	in.runningAt = now.Add(provision)
	neverBoot := s.NeverBoot
	if !neverBoot && s.NeverBootFraction > 0 {
		neverBoot = p.rnd.Float64() < s.NeverBootFraction
	}
	if !neverBoot {
		boot := s.BootTime
		if s.BootDist != nil {
			boot = max(0, s.BootDist(p.rnd))
		}
		in.bootAt = in.runningAt.Add(boot)
	}
	crash := s.CrashAfter
	if s.CrashDist != nil {
		crash = s.CrashDist(p.rnd)
	}
	if crash > 0 {
		in.crashAt = in.runningAt.Add(crash)
	}
	switch {
	case s.PreemptAfter > 0 && (s.VanishAfter <= 0 || s.PreemptAfter <= s.VanishAfter):
		in.goneAt = in.runningAt.Add(s.PreemptAfter)
		in.preempt = true
	case s.VanishAfter > 0:
		in.goneAt = in.runningAt.Add(s.VanishAfter)
	}
	p.instances[id] = in
	p.order = append(p.order, id)
	call.InstanceID = id
	if s.MaybeCreatedErrors > 0 {
		s.MaybeCreatedErrors--
		call.Err = &provider.Error{Op: "create", Kind: provider.KindTransient, MaybeCreated: true,
			Message: "outcome unknown: the provider answered 502 and could not be asked again"}
		p.record(call)
		return nil, call.Err
	}
	p.record(call)
	out := in.inst
	p.advance(in, now)
	out.State = in.inst.State
	return &out, nil
}

// advance brings in up to now.
func (p *Provider) advance(in *instance, now time.Time) {
	if in.gone || in.inst.Exited {
		return
	}
	if !in.goneAt.IsZero() && !now.Before(in.goneAt) {
		in.gone = true
		in.inst.State = provider.InstanceGone
		in.inst.Preempted = in.preempt
		return
	}
	if in.inst.State == provider.InstancePending && !now.Before(in.runningAt) {
		in.inst.State = provider.InstanceRunning
	}
}

// Get implements provider.Provider. Deleted and vanished instances are
// ErrNotFound; preempted ones are returned (state gone, Preempted) so the
// caller can tell preemption from vanishing.
func (p *Provider) Get(ctx context.Context, id string) (*provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	call := Call{Op: "get", InstanceID: id}
	if err := takeErr(&p.NextGetErr); err != nil {
		call.Err = err
		p.record(call)
		return nil, err
	}
	in, ok := p.instances[id]
	ok = ok && in.cluster == p.cluster
	if ok {
		p.advance(in, p.clock.Now())
	}
	if !ok || (in.gone && !in.inst.Preempted) {
		err := &provider.Error{Op: "get", Kind: provider.KindNotFound, Message: id, Err: provider.ErrNotFound}
		call.Err = err
		p.record(call)
		return nil, err
	}
	call.WorkerID = in.inst.WorkerID
	p.record(call)
	out := in.inst
	return &out, nil
}

// List implements provider.Provider: every instance of this deployment
// not gone, in creation order.
func (p *Provider) List(ctx context.Context) ([]*provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	call := Call{Op: "list"}
	if err := takeErr(&p.NextListErr); err != nil {
		call.Err = err
		p.record(call)
		return nil, err
	}
	if p.failList > 0 {
		p.failList--
		err := provider.NewError("list", provider.KindTransient, "simulated list failure")
		call.Err = err
		p.record(call)
		return nil, err
	}
	now := p.clock.Now()
	var out []*provider.Instance
	for _, id := range p.order {
		in := p.instances[id]
		if in.cluster != p.cluster {
			continue
		}
		p.advance(in, now)
		if in.gone {
			continue
		}
		c := in.inst
		out = append(out, &c)
	}
	p.record(call)
	return out, nil
}

// Delete implements provider.Provider. An unknown or already gone instance
// is ErrNotFound.
func (p *Provider) Delete(ctx context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	call := Call{Op: "delete", InstanceID: id}
	if err := takeErr(&p.NextDeleteErr); err != nil {
		call.Err = err
		p.record(call)
		return err
	}
	in, ok := p.instances[id]
	ok = ok && in.cluster == p.cluster
	if ok {
		p.advance(in, p.clock.Now())
	}
	if !ok || in.gone {
		err := &provider.Error{Op: "delete", Kind: provider.KindNotFound, Message: id, Err: provider.ErrNotFound}
		call.Err = err
		p.record(call)
		return err
	}
	call.WorkerID = in.inst.WorkerID
	in.gone, in.deleted = true, true
	in.inst.State = provider.InstanceGone
	p.record(call)
	return nil
}
