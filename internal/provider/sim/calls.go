package sim

// Scripts, fault injection and call recording: what tests set and read.

import (
	"slices"
	"time"
)

// SetScript sets the script of one placement key (pool/gpu/region, see
// provider.Placement.Key). It applies to instances created afterwards.
func (p *Provider) SetScript(placementKey string, s Script) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.scripts[placementKey] = &s
}

// SetLatency changes the latency recorded for subsequent calls.
func (p *Provider) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// FailList makes the next n List calls fail with a transient error.
func (p *Provider) FailList(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failList = n
}

// Calls returns a copy of every call recorded so far.
func (p *Provider) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// CallCount returns how many calls of op were recorded.
func (p *Provider) CallCount(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		if c.Op == op {
			n++
		}
	}
	return n
}

// Reset forgets recorded calls and pending injected errors (instances and
// scripts stay).
func (p *Provider) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = nil
	p.failList = 0
	p.NextCreateErr, p.NextGetErr, p.NextListErr, p.NextDeleteErr = nil, nil, nil, nil
}

func (p *Provider) record(c Call) {
	c.Time = p.clock.Now()
	c.Latency = p.latency
	p.calls = append(p.calls, c)
}

func (p *Provider) script(key string) *Script {
	if s, ok := p.scripts[key]; ok {
		return s
	}
	s := p.opts.Default
	p.scripts[key] = &s
	return &s
}

func takeErr(e *error) error {
	err := *e
	*e = nil
	return err
}
