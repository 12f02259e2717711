package status

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// verdict sets Verdict, Reason, Details, Recovered and each pool's
// SpawnBlocked. See the package doc for the rules.
func (b *builder) verdict() {
	r := b.r
	capReached := r.Spend.MaxHourlySpend > 0 && r.Spend.PerHour >= r.Spend.MaxHourlySpend
	var blocked []string // reasons, one per blocked pool
	for i := range r.Pools {
		p := &r.Pools[i]
		switch {
		case capReached:
			p.SpawnBlocked = fmt.Sprintf("global max_hourly_spend $%.2f reached ($%.2f/h)", r.Spend.MaxHourlySpend, r.Spend.PerHour)
		case p.MaxHourlySpend > 0 && p.SpendPerHour >= p.MaxHourlySpend:
			p.SpawnBlocked = fmt.Sprintf("max_hourly_spend $%.2f reached ($%.2f/h)", p.MaxHourlySpend, p.SpendPerHour)
		case p.Candidates > 0:
			var open []string
			var canary *time.Time
			for _, br := range r.Breakers {
				if br.Pool == p.Name && br.Blocking {
					open = append(open, br.Label)
					if br.CanaryAt != nil && (canary == nil || br.CanaryAt.Before(*canary)) {
						canary = br.CanaryAt
					}
				}
			}
			if len(open) == p.Candidates {
				what := "the breaker of its only placement is open"
				if p.Candidates > 1 {
					what = fmt.Sprintf("the breakers of all %d candidate placements are open", p.Candidates)
				}
				if canary != nil {
					what += fmt.Sprintf("; next canary at %s", canary.UTC().Format("15:04:05"))
				}
				p.SpawnBlocked = what
			}
		}
		if p.SpawnBlocked != "" {
			work := "no work is waiting"
			if p.Claimable > 0 {
				work = fmt.Sprintf("%d claimable tasks wait", p.Claimable)
			}
			blocked = append(blocked, fmt.Sprintf("pool %s cannot spawn: %s (%s)", p.Name, p.SpawnBlocked, work))
		}
	}

	var details []string
	stale := r.Workers.ByHealth[HealthStale]
	if stale > 0 {
		details = append(details, fmt.Sprintf("%d ready %s a stale heartbeat (older than 2 heartbeat intervals)", stale, plural(stale, "worker has", "workers have")))
	}
	for _, br := range r.Breakers {
		if br.State != string(core.BreakerClosed) {
			details = append(details, fmt.Sprintf("breaker %s for %s: %s", br.State, br.Label, br.Reason))
		}
	}
	lastFail := time.Time{}
	if n := len(r.Failures); n > 0 {
		lastFail = r.Failures[n-1].Time
	}
	failingNow := !lastFail.IsZero() && b.now.Sub(lastFail) <= recentFailure && !b.lastReady.After(lastFail)
	if failingNow {
		details = append(details, fmt.Sprintf("last worker failure %s ago (%s) and no worker reached ready since",
			fmtDur(b.now.Sub(lastFail).Round(time.Second)), r.Failures[len(r.Failures)-1].Class))
	}

	noCapacity := ""
	for _, p := range r.Pools {
		if p.Claimable == 0 || p.Ready > 0 {
			continue
		}
		capacity, other := 0, 0
		for _, f := range r.Failures {
			if f.Pool != p.Name || !f.Time.After(b.lastReady) {
				continue
			}
			if f.Class == string(core.FailCapacity) {
				capacity++
			} else {
				other++
			}
		}
		if capacity > 0 && other == 0 {
			noCapacity = fmt.Sprintf("pool %s has %d claimable tasks and no ready worker; its last %d start %s failed for lack of capacity at the provider",
				p.Name, p.Claimable, capacity, plural(capacity, "attempt", "attempts"))
			break
		}
	}

	switch {
	case len(blocked) > 0:
		r.Verdict, r.Reason = VerdictBlocked, strings.Join(blocked, "; ")
	case r.Queue.Claimable > 0 && r.Workers.Live == 0:
		r.Verdict = VerdictNoWorkers
		r.Reason = fmt.Sprintf("%d claimable %s and no live worker", r.Queue.Claimable, plural(r.Queue.Claimable, "task", "tasks"))
	case noCapacity != "":
		r.Verdict, r.Reason = VerdictNoCapacity, noCapacity
	case len(details) > 0:
		r.Verdict, r.Reason = VerdictDegraded, details[0]
		details = details[1:]
	default:
		r.Verdict = VerdictHealthy
		ready := 0
		for _, p := range r.Pools {
			ready += p.Ready
		}
		switch {
		case ready > 0:
			r.Reason = fmt.Sprintf("%d ready %s, every heartbeat fresh, no breaker open", ready, plural(ready, "worker", "workers"))
		case r.Workers.Live > 0:
			r.Reason = fmt.Sprintf("%d %s starting, no breaker open", r.Workers.Live, plural(r.Workers.Live, "worker", "workers"))
		default:
			r.Reason = "no work waiting and no worker needed"
		}
	}
	r.Details = append(r.Details, details...)
	if !failingNow && len(r.Failures) > 0 && r.Verdict != VerdictBlocked {
		n := len(r.Failures)
		rec := fmt.Sprintf("recovered: %d worker %s in the last %s, the last %s ago",
			n, plural(n, "failure", "failures"), fmtDur(time.Duration(r.WindowS*float64(time.Second))), fmtDur(b.now.Sub(lastFail).Round(time.Second)))
		if b.lastReady.After(lastFail) {
			rec += fmt.Sprintf("; a worker reached ready since, at %s", b.lastReady.UTC().Format("15:04:05"))
		}
		r.Recovered = rec
	}
}

// hints computes patterns from the numbers. Every hint names a setting or
// command that exists.
func (b *builder) hints() {
	r := b.r
	b.failureHints()
	for _, id := range slices.Sorted(maps.Keys(b.lostBy)) {
		if n := b.lostBy[id]; n >= 2 {
			r.Hints = append(r.Hints, fmt.Sprintf("task %s was running on %d workers that were lost in the last %s: it may be what kills them (a poison task); it fails for good after tasks.max_lost losses (drover why task %s)",
				id, n, fmtDur(secs(r.WindowS)), id))
		}
	}
	for _, s := range r.Startup {
		if s.Slow {
			r.Hints = append(r.Hints, fmt.Sprintf("workers on %s take %s to their first heartbeat (p95 over %d starts; p50 %s), above %s",
				s.Label, fmtDur(secs(s.P95S)), s.Samples, fmtDur(secs(s.P50S)), fmtDur(secs(s.ThresholdS))))
		}
	}
	if r.Queue.Claimable == 0 && r.Queue.Queued > 0 && len(r.Queue.OwnersAtLimit) > 0 {
		var owners []string
		for _, o := range r.Queue.OwnersAtLimit {
			owners = append(owners, fmt.Sprintf("%s at its limit %d/%d", o.Owner, o.Running, o.Limit))
		}
		r.Hints = append(r.Hints, fmt.Sprintf("claimable 0 although %d queued: owner %s (tasks.owner_limit); no worker is spawned for them",
			r.Queue.Queued, strings.Join(owners, ", owner ")))
	} else if r.Queue.OwnerBlocked > 0 {
		r.Hints = append(r.Hints, fmt.Sprintf("%d queued tasks wait only for their owner's running limit (tasks.owner_limit %d); they do not count as demand",
			r.Queue.OwnerBlocked, b.cfg.Tasks.OwnerLimit))
	}
	for _, br := range r.Breakers {
		if !br.Blocking {
			continue
		}
		p := b.pool(br.Pool)
		other := "the pool has no other candidate: add one to pools." + br.Pool + ".candidates to keep spawning"
		if p.Candidates > 1 {
			other = "the pool's other candidates are still used"
		}
		when := ""
		if br.CanaryAt != nil {
			when = " until the canary at " + br.CanaryAt.UTC().Format("15:04:05")
		}
		r.Hints = append(r.Hints, fmt.Sprintf("no spawns on %s%s; %s", br.Label, when, other))
	}
	for _, p := range r.Pools {
		if strings.Contains(p.SpawnBlocked, "max_hourly_spend") {
			r.Hints = append(r.Hints, fmt.Sprintf("pool %s is at its spend cap: %s; raise max_hourly_spend or wait for workers to go idle", p.Name, p.SpawnBlocked))
		}
	}
}

func (b *builder) failureHints() {
	r := b.r
	if len(r.Failures) == 0 {
		return
	}
	total := len(r.Failures)
	byClass := map[string][]Failure{}
	for _, f := range r.Failures {
		byClass[f.Class] = append(byClass[f.Class], f)
	}
	classes := slices.SortedFunc(maps.Keys(byClass), func(a, c string) int {
		if d := len(byClass[c]) - len(byClass[a]); d != 0 {
			return d
		}
		return strings.Compare(a, c)
	})
	for _, c := range classes {
		fs := byClass[c]
		lo, hi := fs[0].AgeAtFailureS, fs[0].AgeAtFailureS
		pools := map[string]bool{}
		for _, f := range fs {
			lo, hi = min(lo, f.AgeAtFailureS), max(hi, f.AgeAtFailureS)
			pools[f.Pool] = true
		}
		at := fmt.Sprintf("%d s", int(lo))
		if hi != lo {
			at = fmt.Sprintf("%d–%d s", int(lo), int(hi))
		}
		head := fmt.Sprintf("%d of the last %d failures are %s at %s", len(fs), total, c, at)
		switch core.FailureClass(c) {
		case core.FailBootTimeout:
			for _, pool := range slices.Sorted(maps.Keys(pools)) {
				bt := bootTimeoutOf(b.cfg, pool)
				r.Hints = append(r.Hints, fmt.Sprintf("%s while boot_timeout is %d s: workers of pool %s need longer to send their first heartbeat; raise pools.%s.boot_timeout or make the image start faster",
					head, int(bt.Seconds()), pool, pool))
			}
		case core.FailProvisionTimeout:
			for _, pool := range slices.Sorted(maps.Keys(pools)) {
				pt := provisionTimeoutOf(b.cfg, pool)
				r.Hints = append(r.Hints, fmt.Sprintf("%s while provision_timeout is %d s: the provider is slow to start machines; raise pools.%s.provision_timeout or add candidates",
					head, int(pt.Seconds()), pool))
			}
		case core.FailCapacity:
			r.Hints = append(r.Hints, head+": the provider has no machines of that type; add another GPU type or region to the pool's candidates")
		case core.FailQuota, core.FailInvalidRequest:
			r.Hints = append(r.Hints, head+": check the provider API key and account balance; the breaker stays open until its cooldown or `drover breaker reset KEY`")
		case core.FailHeartbeatLost:
			r.Hints = append(r.Hints, head+": check the agents' network and logs (drover logs --worker ID)")
		default:
			r.Hints = append(r.Hints, head)
		}
	}
	// Placement pattern: every failure on one placement while another
	// placement of the same pool has a ready worker.
	pls := map[string]bool{}
	for _, f := range r.Failures {
		pls[f.Placement] = true
	}
	if len(pls) == 1 && r.Failures[0].Placement != "" {
		bad := r.Failures[0].Placement
		var good []string
		seen := map[string]bool{}
		for _, w := range r.WorkerTable {
			if w.Pool == r.Failures[0].Pool && w.Placement != bad && w.Health == HealthHealthy && !seen[w.Placement] {
				seen[w.Placement] = true
				good = append(good, w.Placement)
			}
		}
		if len(good) > 0 {
			r.Hints = append(r.Hints, fmt.Sprintf("all %d failures are on placement %s; %s %s healthy", total, bad, strings.Join(good, ", "), plural(len(good), "is", "are")))
		}
	}
}

// actions says what to do now, or why nothing is needed.
func (b *builder) actions() {
	r := b.r
	switch r.Verdict {
	case VerdictBlocked:
		for _, br := range r.Breakers {
			if br.Blocking {
				canary := "when its cooldown ends"
				if br.CanaryAt != nil {
					canary = "at " + br.CanaryAt.UTC().Format("15:04:05")
				}
				r.Actions = append(r.Actions, fmt.Sprintf("find why starts on %s fail (%s, see the hints), fix it, then `drover breaker reset %s`, or wait: one canary spawns %s",
					br.Label, orStr(br.TopClass, "see the timeline"), br.Key, canary))
			}
		}
		for _, p := range r.Pools {
			if strings.Contains(p.SpawnBlocked, "max_hourly_spend") {
				r.Actions = append(r.Actions, fmt.Sprintf("pool %s: raise max_hourly_spend if the spend is expected", p.Name))
			}
		}
	case VerdictNoWorkers:
		r.Actions = append(r.Actions, "check that the pools' max is above 0 and the server is the leader (drover why pool NAME)")
	case VerdictNoCapacity:
		r.Actions = append(r.Actions, "add another GPU type or region to the pool's candidates, or wait for the provider's capacity")
	case VerdictDegraded:
		r.Actions = append(r.Actions, "look at the details and hints above; `drover why worker ID` explains one worker")
	}
	if len(r.Actions) == 0 {
		reason := "the fleet is healthy"
		if r.Recovered != "" {
			reason = "the fleet recovered on its own (" + strings.TrimPrefix(r.Recovered, "recovered: ") + ")"
		}
		r.Actions = append(r.Actions, "no action needed: "+reason)
		for _, h := range r.Hints {
			r.Actions = append(r.Actions, "optional, to prevent a recurrence: "+h)
		}
	}
}

func orStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)).Round(time.Second) }

// fmtDur prints 30m0s as "30m", 1h30m0s as "1h30m" and 2m5s as "2m5s".
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
