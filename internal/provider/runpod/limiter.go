package runpod

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limiter keeps the client under the budget RunPod advertises in the
// RateLimit-Policy ("minute";q=60;w=60, …) and RateLimit ("minute";r=3;t=12,
// …) headers, before any 429 comes. Each request takes one unit of every
// known window; a window with none left makes the caller wait until it
// resets. Responses correct the local count (the lower of the local and
// the server's remaining wins, so other users of the same key are
// counted). Without headers it does not limit.
type Limiter struct {
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu      sync.Mutex
	windows map[string]*window
	// blockedUntil is set by a 429's Retry-After: nothing is sent before.
	blockedUntil time.Time
	waits        int
	// inflight counts requests sent but not answered: the server's
	// remaining count does not know them yet.
	inflight int
}

type window struct {
	quota     int           // q from the policy; 0 = unknown
	length    time.Duration // w from the policy
	remaining int
	resetAt   time.Time
	known     bool // remaining/resetAt come from a RateLimit header
}

// NewLimiter returns a limiter on the given clock; sleep waits (it must
// return ctx.Err() when ctx ends first).
func NewLimiter(now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) *Limiter {
	return &Limiter{now: now, sleep: sleep, windows: map[string]*window{}}
}

// resetMargin is added to a window's reset time, so that a request is not
// sent a hair before the server's window rolls over.
const resetMargin = 50 * time.Millisecond

// Wait blocks until a request may be sent and takes one unit of budget.
func (l *Limiter) Wait(ctx context.Context) error {
	for {
		d := l.reserve()
		if d <= 0 {
			return nil
		}
		if err := l.sleep(ctx, d); err != nil {
			return err
		}
	}
}

// reserve takes a unit and returns 0, or returns how long to wait.
func (l *Limiter) reserve() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Before(l.blockedUntil) {
		l.waits++
		return l.blockedUntil.Sub(now)
	}
	var wait time.Duration
	for _, w := range l.windows {
		if !w.known {
			continue
		}
		if !now.Before(w.resetAt.Add(resetMargin)) {
			if w.quota > 0 {
				// The window rolled over: a fresh quota until the
				// server says otherwise, less what is in flight (it may
				// be counted in the new window).
				w.remaining = w.quota - l.inflight
				w.resetAt = now.Add(w.length)
			} else {
				w.known = false
				continue
			}
		}
		if w.remaining <= 0 {
			if d := w.resetAt.Add(resetMargin).Sub(now); d > wait {
				wait = d
			}
		}
	}
	if wait > 0 {
		l.waits++
		return wait
	}
	for _, w := range l.windows {
		if w.known {
			w.remaining--
		}
	}
	l.inflight++
	return 0
}

// Done ends a request that got no answer (Observe ends answered ones).
func (l *Limiter) Done() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight = max(l.inflight-1, 0)
}

// Observe reads the rate-limit headers of a response.
func (l *Limiter) Observe(policy, state string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight = max(l.inflight-1, 0)
	if policy == "" && state == "" {
		return
	}
	now := l.now()
	for _, m := range parseRateLimit(policy) {
		w := l.window(m.name)
		if q, ok := m.params["q"]; ok {
			w.quota = q
		}
		if s, ok := m.params["w"]; ok {
			w.length = time.Duration(s) * time.Second
		}
	}
	for _, m := range parseRateLimit(state) {
		r, okR := m.params["r"]
		t, okT := m.params["t"]
		if !okR || !okT {
			continue
		}
		w := l.window(m.name)
		reset := now.Add(time.Duration(t) * time.Second)
		// The server's count does not include requests still in flight.
		left := r - l.inflight
		if !w.known || reset.After(w.resetAt.Add(time.Second)) {
			// A new window (or the first news of one): the server's count.
			w.remaining, w.resetAt, w.known = left, reset, true
			continue
		}
		w.remaining = min(w.remaining, left)
		w.resetAt = reset
	}
}

// Block stops every request for d (a 429's Retry-After).
func (l *Limiter) Block(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until := l.now().Add(d); until.After(l.blockedUntil) {
		l.blockedUntil = until
	}
}

// Waits returns how many times a caller had to wait (for tests and the
// benchmark).
func (l *Limiter) Waits() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waits
}

func (l *Limiter) window(name string) *window {
	w := l.windows[name]
	if w == nil {
		w = &window{}
		l.windows[name] = w
	}
	return w
}

type rlMember struct {
	name   string
	params map[string]int
}

// parseRateLimit reads a structured-field list such as
// `"minute";r=0;t=12, "hour";r=2800;t=1812`. Malformed members are skipped.
func parseRateLimit(h string) []rlMember {
	var out []rlMember
	for part := range strings.SplitSeq(h, ",") {
		fields := strings.Split(strings.TrimSpace(part), ";")
		if len(fields) < 2 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(fields[0]), `"`)
		if name == "" {
			continue
		}
		m := rlMember{name: name, params: map[string]int{}}
		for _, f := range fields[1:] {
			k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
			if !ok {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				continue
			}
			m.params[k] = n
		}
		out = append(out, m)
	}
	return out
}
