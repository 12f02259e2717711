package breaker

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// Defaults of Config (DESIGN §4 and §9).
const (
	DefaultWindow         = 30 * time.Minute
	DefaultThreshold      = 0.8
	DefaultMinSamples     = 5
	DefaultMaxConsecutive = 5
	DefaultCooldown       = time.Minute
	DefaultMaxCooldown    = 30 * time.Minute
	// DefaultStartGrace: a heartbeat lost within this long after ready is
	// still a start failure (the agent came up but never really worked).
	DefaultStartGrace = 5 * time.Minute
)

// Config holds the breaker parameters. Zero fields take the defaults through
// WithDefaults.
type Config struct {
	// Window is how far back outcomes are counted (30m).
	Window time.Duration
	// Threshold is the failure rate (failures/outcomes) that trips the
	// breaker, in (0, 1] (0.8). The comparison is ≥.
	Threshold float64
	// MinSamples is the least number of outcomes in the window before the
	// rate may trip the breaker (5).
	MinSamples int
	// MaxConsecutive trips the breaker after this many failures in a row,
	// whatever the rate (5).
	MaxConsecutive int
	// Cooldown is how long the breaker stays open after the first trip; it
	// doubles on each re-trip (1m).
	Cooldown time.Duration
	// MaxCooldown caps the doubled cooldown (30m).
	MaxCooldown time.Duration
	// StartGrace is how long after ready a lost heartbeat still counts as a
	// start failure (5m).
	StartGrace time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Threshold <= 0 {
		c.Threshold = DefaultThreshold
	}
	if c.MinSamples <= 0 {
		c.MinSamples = DefaultMinSamples
	}
	if c.MaxConsecutive <= 0 {
		c.MaxConsecutive = DefaultMaxConsecutive
	}
	if c.Cooldown <= 0 {
		c.Cooldown = DefaultCooldown
	}
	if c.MaxCooldown <= 0 {
		c.MaxCooldown = DefaultMaxCooldown
	}
	if c.MaxCooldown < c.Cooldown {
		c.MaxCooldown = c.Cooldown
	}
	if c.StartGrace <= 0 {
		c.StartGrace = DefaultStartGrace
	}
	return c
}

// CooldownFor returns the cooldown of a trip when the breaker has already
// tripped trips times in a row: Cooldown·2^trips, capped at MaxCooldown.
func (c Config) CooldownFor(trips int) time.Duration {
	c = c.WithDefaults()
	if trips < 0 {
		trips = 0
	}
	d := c.Cooldown
	for range trips {
		if d >= c.MaxCooldown {
			break
		}
		d *= 2
	}
	return min(d, c.MaxCooldown)
}

// New returns the closed breaker of key.
func New(key string, now time.Time) *core.BreakerState {
	return &core.BreakerState{Key: key, Status: core.BreakerClosed, UpdatedAt: now}
}

// Verdict is the answer of Allow.
type Verdict struct {
	// Allowed says whether a spawn on the key may go ahead.
	Allowed bool
	// Canary says the allowed spawn is the half-open probe: the caller must
	// MarkCanary the worker it spawns.
	Canary bool
	// Reason explains a refusal (or a canary) in one line for events and
	// status.
	Reason string
}

// Allow decides whether one spawn on st's key may go ahead at now. An open
// breaker whose cooldown has passed moves to half-open here and grants
// exactly one canary; st is changed in that case and must be saved.
func Allow(cfg Config, st *core.BreakerState, now time.Time) Verdict {
	switch st.Status {
	case core.BreakerOpen:
		if st.Until != nil && now.Before(*st.Until) {
			return Verdict{Reason: openReason(st)}
		}
		st.Status = core.BreakerHalfOpen
		st.CanaryWorker = ""
		st.UpdatedAt = now
		return Verdict{Allowed: true, Canary: true,
			Reason: fmt.Sprintf("breaker half-open for %s: spawning one canary", KeyLabel(st.Key))}
	case core.BreakerHalfOpen:
		if st.CanaryWorker != "" {
			return Verdict{Reason: fmt.Sprintf("breaker half-open for %s: waiting for canary worker %s",
				KeyLabel(st.Key), st.CanaryWorker)}
		}
		return Verdict{Allowed: true, Canary: true,
			Reason: fmt.Sprintf("breaker half-open for %s: spawning one canary", KeyLabel(st.Key))}
	default:
		return Verdict{Allowed: true}
	}
}

func openReason(st *core.BreakerState) string {
	var b strings.Builder
	fmt.Fprintf(&b, "breaker open for %s", KeyLabel(st.Key))
	if st.OpenedAt != nil {
		fmt.Fprintf(&b, " since %s", st.OpenedAt.UTC().Format("15:04"))
	}
	if st.Reason != "" {
		b.WriteString(", ")
		b.WriteString(st.Reason)
	}
	if st.Until != nil {
		fmt.Fprintf(&b, "; next canary at %s", st.Until.UTC().Format("15:04"))
	}
	return b.String()
}

// KeyLabel renders a placement key "pool/gpu/region" as
// "pool=P gpu=G region=R" for messages. Other keys are returned unchanged.
func KeyLabel(key string) string {
	parts := strings.SplitN(key, "/", 3)
	if len(parts) != 3 {
		return key
	}
	q := func(s string) string {
		if s == "" || strings.ContainsAny(s, " \t\"=") {
			return fmt.Sprintf("%q", s)
		}
		return s
	}
	return "pool=" + q(parts[0]) + " gpu=" + q(parts[1]) + " region=" + q(parts[2])
}

// MarkCanary records workerID as the half-open probe of st.
func MarkCanary(st *core.BreakerState, workerID string, now time.Time) {
	st.CanaryWorker = workerID
	st.UpdatedAt = now
}

// Record adds one start outcome to st at now and returns the transition it
// caused ("closed→open", "half-open→closed", "half-open→open") or "".
func Record(cfg Config, st *core.BreakerState, o core.BreakerOutcome, now time.Time) (transition string) {
	cfg = cfg.WithDefaults()
	if o.Time.IsZero() {
		o.Time = now
	}
	st.Outcomes = append(st.Outcomes, o)
	st.Outcomes = trim(st.Outcomes, now.Add(-cfg.Window))
	if o.Success {
		st.Consecutive = 0
	} else {
		st.Consecutive++
	}
	st.UpdatedAt = now
	if st.Status == "" {
		st.Status = core.BreakerClosed
	}

	switch st.Status {
	case core.BreakerClosed:
		if o.Success {
			return ""
		}
		failed, total := counts(st.Outcomes)
		rate := float64(failed) / float64(total)
		switch {
		case total >= cfg.MinSamples && rate >= cfg.Threshold:
			open(cfg, st, now, fmt.Sprintf("%d/%d recent starts failed (%s)", failed, total, classList(st.Outcomes)))
			return "closed→open"
		case st.Consecutive >= cfg.MaxConsecutive:
			open(cfg, st, now, fmt.Sprintf("%d start failures in a row (%s)", st.Consecutive, classList(st.Outcomes)))
			return "closed→open"
		}
		return ""
	case core.BreakerHalfOpen:
		if st.CanaryWorker == "" || o.Worker != st.CanaryWorker {
			return ""
		}
		if o.Success {
			closeState(st, now)
			return "half-open→closed"
		}
		class := string(o.Class)
		if class == "" {
			class = "failed"
		}
		open(cfg, st, now, fmt.Sprintf("canary worker %s failed (%s)", o.Worker, class))
		return "half-open→open"
	}
	return ""
}

// Trip opens st at once with reason, whatever its numbers: quota and
// invalid-request failures (no retry fixes a bad API key or an empty
// balance) and the operator's "breaker open". The cooldown doubles as for
// any re-trip.
func Trip(cfg Config, st *core.BreakerState, now time.Time, reason string) {
	open(cfg.WithDefaults(), st, now, reason)
}

// Reset closes st and forgets its window (the operator's "breaker reset").
func Reset(st *core.BreakerState, now time.Time) {
	closeState(st, now)
	st.Consecutive = 0
}

func open(cfg Config, st *core.BreakerState, now time.Time, reason string) {
	until := now.Add(cfg.CooldownFor(st.Trips))
	opened := now
	st.Status = core.BreakerOpen
	st.OpenedAt = &opened
	st.Until = &until
	st.Trips++
	st.CanaryWorker = ""
	st.Reason = reason
	st.UpdatedAt = now
}

func closeState(st *core.BreakerState, now time.Time) {
	st.Status = core.BreakerClosed
	st.OpenedAt = nil
	st.Until = nil
	st.Trips = 0
	st.Consecutive = 0
	st.CanaryWorker = ""
	st.Reason = ""
	st.Outcomes = nil
	st.UpdatedAt = now
}

// trim drops outcomes older than cutoff (kept in place, order preserved).
func trim(out []core.BreakerOutcome, cutoff time.Time) []core.BreakerOutcome {
	return slices.DeleteFunc(out, func(o core.BreakerOutcome) bool { return o.Time.Before(cutoff) })
}

func counts(out []core.BreakerOutcome) (failed, total int) {
	for _, o := range out {
		total++
		if !o.Success {
			failed++
		}
	}
	return failed, total
}

// classCounts returns failure classes by count, most frequent first (ties by
// name, for determinism).
func classCounts(out []core.BreakerOutcome) []classCount {
	m := map[core.FailureClass]int{}
	for _, o := range out {
		if !o.Success {
			c := o.Class
			if c == "" {
				c = "unknown"
			}
			m[c]++
		}
	}
	res := make([]classCount, 0, len(m))
	for c, n := range m {
		res = append(res, classCount{c, n})
	}
	slices.SortFunc(res, func(a, b classCount) int {
		if a.n != b.n {
			return b.n - a.n
		}
		return strings.Compare(string(a.class), string(b.class))
	})
	return res
}

type classCount struct {
	class core.FailureClass
	n     int
}

// classList renders the failure classes of out: "boot-timeout" when there
// is one, "3 boot-timeout, 1 capacity" when there are several.
func classList(out []core.BreakerOutcome) string {
	cc := classCounts(out)
	switch len(cc) {
	case 0:
		return "no class"
	case 1:
		return string(cc[0].class)
	}
	parts := make([]string, len(cc))
	for i, c := range cc {
		parts[i] = fmt.Sprintf("%d %s", c.n, c.class)
	}
	return strings.Join(parts, ", ")
}

// Summary is what status shows for one breaker, with the seed report's
// numbers: "failed 4/7 in last 30m, threshold 80%, min sample 5 → not
// blocking".
type Summary struct {
	Status      core.BreakerStatus
	Failed      int
	Total       int
	Rate        float64
	Threshold   float64
	Window      time.Duration
	MinSamples  int
	Consecutive int
	// Verdict is "not blocking", "blocking until 12:06" or a half-open
	// explanation.
	Verdict string
	// Until is when an open breaker next lets a canary through.
	Until *time.Time
	// TopClass is the most frequent failure class in the window.
	TopClass core.FailureClass
}

// Summarize computes st's numbers at now without changing st.
func Summarize(cfg Config, st *core.BreakerState, now time.Time) Summary {
	cfg = cfg.WithDefaults()
	cutoff := now.Add(-cfg.Window)
	var window []core.BreakerOutcome
	for _, o := range st.Outcomes {
		if !o.Time.Before(cutoff) {
			window = append(window, o)
		}
	}
	failed, total := counts(window)
	s := Summary{
		Status:      st.Status,
		Failed:      failed,
		Total:       total,
		Threshold:   cfg.Threshold,
		Window:      cfg.Window,
		MinSamples:  cfg.MinSamples,
		Consecutive: st.Consecutive,
	}
	if s.Status == "" {
		s.Status = core.BreakerClosed
	}
	if total > 0 {
		s.Rate = float64(failed) / float64(total)
	}
	if cc := classCounts(window); len(cc) > 0 {
		s.TopClass = cc[0].class
	}
	switch s.Status {
	case core.BreakerOpen:
		if st.Until != nil {
			u := *st.Until
			s.Until = &u
			if now.Before(u) {
				s.Verdict = "blocking until " + u.UTC().Format("15:04:05")
			} else {
				s.Verdict = "cooldown over: next spawn is the canary"
			}
		} else {
			s.Verdict = "blocking"
		}
	case core.BreakerHalfOpen:
		if st.CanaryWorker != "" {
			s.Verdict = "half-open: waiting for canary " + st.CanaryWorker
		} else {
			s.Verdict = "half-open: next spawn is the canary"
		}
	default:
		s.Verdict = "not blocking"
	}
	return s
}

// String renders s as one status line: "failed 4/7 in last 30m, threshold
// 80%, min sample 5 → not blocking".
func (s Summary) String() string {
	return fmt.Sprintf("failed %d/%d in last %s, threshold %s, min sample %d → %s",
		s.Failed, s.Total, fmtDuration(s.Window), fmtPercent(s.Threshold), s.MinSamples, s.Verdict)
}

func fmtPercent(f float64) string {
	p := f * 100
	if p == math.Trunc(p) {
		return fmt.Sprintf("%d%%", int(p))
	}
	return fmt.Sprintf("%.1f%%", p)
}

// fmtDuration prints 30m0s as "30m" and 1h30m0s as "1h30m".
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// CountsAsStartFailure reports whether a worker that failed with class at
// failedAt (readyAt is when it became ready, nil if never) is a start
// failure for the breaker (DESIGN §4):
//
//   - capacity, provision-timeout, boot-timeout, gpu-missing: always;
//   - agent-exit: only before ready;
//   - heartbeat-lost: before ready or within startGrace of ready;
//   - quota and invalid-request: false, because they Trip the breaker at
//     once instead of being counted;
//   - vanished, preempted, stuck-task, gpu-fault, provider-error (a
//     transient provider failure, not a property of the placement) and no
//     class (scale-down, drain, operator actions): false.
func CountsAsStartFailure(class core.FailureClass, readyAt *time.Time, failedAt time.Time, startGrace time.Duration) bool {
	switch class {
	case core.FailCapacity, core.FailProvisionTimeout, core.FailBootTimeout, core.FailGPUMissing:
		return true
	case core.FailAgentExit:
		return readyAt == nil
	case core.FailHeartbeatLost:
		if readyAt == nil {
			return true
		}
		if startGrace <= 0 {
			startGrace = DefaultStartGrace
		}
		return failedAt.Sub(*readyAt) <= startGrace
	}
	return false
}

// TripsAtOnce reports whether class opens the breaker immediately (Trip)
// instead of being counted: quota and invalid-request.
func TripsAtOnce(class core.FailureClass) bool {
	return class == core.FailQuota || class == core.FailInvalidRequest
}
