package sim

// The world outside the provider API: instances injected, killed, preempted
// or exited by tests and the simulator, and what simulated agents see.

import (
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/provider"
)

// Inject adds an instance as given (for example one tagged with a worker id
// that has no row: an orphan). An empty ID gets a fresh one, a zero
// CreatedAt the clock's now and an empty State running. The agent of an
// injected instance never boots. It returns the id.
func (p *Provider) Inject(inst provider.Instance) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	if inst.ID == "" {
		p.seq++
		inst.ID = fmt.Sprintf("sim-%06d", p.seq)
	}
	if inst.CreatedAt.IsZero() {
		inst.CreatedAt = now
	}
	if inst.State == "" {
		inst.State = provider.InstanceRunning
	}
	in := &instance{inst: inst, runningAt: inst.CreatedAt, cluster: p.cluster}
	if inst.State == provider.InstanceGone && !inst.Exited {
		in.gone = true
	}
	if _, dup := p.instances[inst.ID]; !dup {
		p.order = append(p.order, inst.ID)
	}
	p.instances[inst.ID] = in
	return inst.ID
}

// SetAccountQuota makes every create fail (on) with an account-wide quota
// error, like RunPod's 402 when the balance runs out, or stops it (off).
func (p *Provider) SetAccountQuota(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.quotaOut = on
}

// Exit makes instance id's container stop on its own now, with detail:
// the instance turns gone and Exited but stays listed (it still bills)
// until it is deleted. It reports whether the instance existed and was
// neither gone nor exited.
func (p *Provider) Exit(id, detail string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	in, ok := p.instances[id]
	if !ok {
		return false
	}
	p.advance(in, p.clock.Now())
	if in.gone || in.inst.Exited {
		return false
	}
	in.inst.State = provider.InstanceGone
	in.inst.Exited, in.inst.ExitDetail = true, detail
	in.goneAt = time.Time{}
	return true
}

// Kill makes instance id vanish now (gone, not preempted). It reports
// whether the instance existed and was not gone.
func (p *Provider) Kill(id string) bool { return p.remove(id, false) }

// Preempt makes the provider take instance id back now. It reports whether
// the instance existed and was not gone.
func (p *Provider) Preempt(id string) bool { return p.remove(id, true) }

func (p *Provider) remove(id string, preempt bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	in, ok := p.instances[id]
	if !ok {
		return false
	}
	p.advance(in, p.clock.Now())
	if in.gone {
		return false
	}
	in.gone = true
	in.inst.State = provider.InstanceGone
	in.inst.Preempted = preempt
	return true
}

// Instances returns every instance on the account (every deployment's),
// gone ones included, in creation order, as of the clock's now.
func (p *Provider) Instances() []provider.Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	out := make([]provider.Instance, 0, len(p.order))
	for _, id := range p.order {
		in := p.instances[id]
		p.advance(in, now)
		out = append(out, in.inst)
	}
	return out
}

// AgentStatus is what simulated agents need to know about an instance.
type AgentStatus struct {
	Exists   bool
	Gone     bool
	Running  bool
	Booted   bool // the agent process is up (boot time elapsed, not crashed)
	Crashed  bool
	WorkerID string
	Pool     string
}

// Now returns the provider's clock's now.
func (p *Provider) Now() time.Time { return p.clock.Now() }

// Agent reports the state of instance id's agent at now.
func (p *Provider) Agent(id string, now time.Time) AgentStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	in, ok := p.instances[id]
	if !ok {
		return AgentStatus{}
	}
	p.advance(in, now)
	st := AgentStatus{Exists: true, Gone: in.gone, WorkerID: in.inst.WorkerID, Pool: in.inst.Pool}
	st.Running = !in.gone && in.inst.State == provider.InstanceRunning
	st.Crashed = !in.crashAt.IsZero() && !now.Before(in.crashAt)
	st.Booted = st.Running && !in.bootAt.IsZero() && !now.Before(in.bootAt) && !st.Crashed
	return st
}

// IDs returns the id of every instance of this deployment in creation
// order.
func (p *Provider) IDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.order))
	for _, id := range p.order {
		if p.instances[id].cluster == p.cluster {
			out = append(out, id)
		}
	}
	return out
}

// NextChange returns the earliest moment after now at which an instance
// that is not gone changes by itself (becomes running, its agent comes up
// or crashes, it vanishes or is preempted), and false when none will. The
// simulator jumps its clock to such moments.
func (p *Provider) NextChange(now time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, id := range p.order {
		in := p.instances[id]
		if in.gone || in.inst.Exited {
			continue
		}
		consider(in.runningAt)
		consider(in.bootAt)
		consider(in.crashAt)
		consider(in.goneAt)
	}
	return next, !next.IsZero()
}
