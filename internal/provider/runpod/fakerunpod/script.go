package fakerunpod

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"time"
)

// Fault is one scripted answer.
type Fault struct {
	// Route is one of the Route… keys; "" matches every route.
	Route string
	// Status is the answer (0: only Delay, then the real answer).
	Status int
	// Count is how many requests get it (0 = 1).
	Count int
	// RetryAfter is the Retry-After of a 429, in seconds.
	RetryAfter int
	// Delay holds the answer back (a slow API).
	Delay time.Duration
	// Detail overrides the problem's detail.
	Detail string
	// AfterDoing runs the real endpoint first and then answers Status
	// anyway (a 5xx after the pod was created: an ambiguous create).
	AfterDoing bool
}

func (f *Fault) detail() string {
	if f.Detail != "" {
		return f.Detail
	}
	switch f.Status {
	case http.StatusTooManyRequests:
		return "rate limit exceeded for the minute window"
	case http.StatusPaymentRequired:
		return "insufficient balance"
	case http.StatusUnauthorized:
		return "invalid API key"
	case http.StatusForbidden:
		return "access denied"
	}
	return "upstream failure"
}

// Script is the fake's scripted behaviour (changed through Server methods).
type Script struct {
	faults []*Fault
	// rate5xx and rate429 are probabilities per request.
	rate5xx, rate429 float64
	retryAfter       int
	// capacity: "gpu|dc" → creates left to refuse (-1 = always); dc ""
	// covers every data center of the GPU.
	capacity map[string]int
	// account answers every create with this status (402, 401, 403).
	account int
	// stuck GPU types never leave PROVISIONING.
	stuck []string
}

func (sc *Script) take(route string, r *rand.Rand) *Fault {
	for i, f := range sc.faults {
		if f.Route != "" && f.Route != route {
			continue
		}
		if f.Count <= 1 {
			sc.faults = slices.Delete(sc.faults, i, i+1)
		} else {
			f.Count--
		}
		return f
	}
	if sc.rate5xx > 0 && r.Float64() < sc.rate5xx {
		return &Fault{Status: http.StatusServiceUnavailable}
	}
	if sc.rate429 > 0 && r.Float64() < sc.rate429 {
		return &Fault{Status: http.StatusTooManyRequests, RetryAfter: sc.retryAfter}
	}
	return nil
}

// capacityLeft reports whether creates of gpu in dc are refused now.
func (sc *Script) capacityLeft(gpu, dc string) bool {
	return sc.capacity[gpu+"|"+dc] != 0 || sc.capacity[gpu+"|"] != 0
}

// useCapacity consumes one refusal for gpu in dc, if any is scripted.
func (sc *Script) useCapacity(gpu, dc string) bool {
	for _, k := range []string{gpu + "|" + dc, gpu + "|"} {
		switch n := sc.capacity[k]; {
		case n < 0:
			return true
		case n > 0:
			sc.capacity[k] = n - 1
			return true
		}
	}
	return false
}

// Inject queues scripted answers; they are used in order.
func (s *Server) Inject(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range faults {
		s.script.faults = append(s.script.faults, &f)
	}
}

// SetErrorRates answers every request with a 503 with probability p5xx and
// with a 429 (Retry-After retryAfter seconds) with probability p429.
func (s *Server) SetErrorRates(p5xx, p429 float64, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script.rate5xx, s.script.rate429, s.script.retryAfter = p5xx, p429, retryAfter
}

// NoCapacity refuses the next n creates of gpu in dc with RunPod's
// capacity 400 (n < 0: always; dc "": every data center; n 0 clears).
func (s *Server) NoCapacity(gpu, dc string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script.capacity[gpu+"|"+dc] = n
}

// SetAccount answers every create with status (402 balance, 401 bad key,
// 403 no permission); 0 clears it.
func (s *Server) SetAccount(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script.account = status
}

// StuckProvisioning makes new pods of gpu stay PROVISIONING forever.
func (s *Server) StuckProvisioning(gpu string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script.stuck = append(s.script.stuck, gpu)
}

// Exit makes a pod's container exit (EXITED); Fail puts it in ERROR.
func (s *Server) Exit(id string) bool { return s.force(id, "EXITED") }

// Fail puts a pod in ERROR.
func (s *Server) Fail(id string) bool { return s.force(id, "ERROR") }

func (s *Server) force(id, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.lookup(id)
	if p == nil {
		return false
	}
	p.forced = status
	s.stepLocked(s.opt.Clock.Now())
	return true
}

// Vanish forgets a pod: it is no longer listed and GET answers 404 (its
// agent is killed).
func (s *Server) Vanish(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.lookup(id)
	if p == nil {
		return false
	}
	now := s.opt.Clock.Now()
	s.bill(p, now)
	p.vanished = true
	p.ended = &now
	if s.agents != nil {
		s.agents.kill(id)
	}
	return true
}
