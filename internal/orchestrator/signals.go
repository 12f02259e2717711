package orchestrator

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
)

// openAccount handles an account-wide refusal (provider.IsAccountWide: an
// empty balance, a refused API key). No candidate of any pool on that
// provider can succeed, so instead of walking the candidates one create
// at a time, every breaker of the provider opens now and one
// provider.quota event says so with the provider's fix-it hint (it is in
// the error's message, msg, already redacted). Running workers are left alone: only spawning
// stops. Keys already open (the failed spawn's own placement) are not
// tripped twice.
func (o *Orchestrator) openAccount(t *tick, pool, pname, msg string) {
	reason := fmt.Sprintf("account-wide quota error from provider %s: %s", pname, msg)
	var keys, labels []string
	for _, name := range slices.Sorted(maps.Keys(o.cfg.Pools)) {
		pc := o.cfg.Pools[name]
		if pc == nil || pc.Provider != pname {
			continue
		}
		pls := pc.Placements()
		if len(pls) == 0 {
			pls = []provider.Placement{{}}
		}
		for _, pl := range pls {
			key := pl.Key(name)
			if slices.Contains(keys, key) {
				continue
			}
			keys = append(keys, key)
			labels = append(labels, breaker.KeyLabel(key))
			st := t.breaker(key)
			if st.Status == core.BreakerOpen && st.Until != nil && t.now.Before(*st.Until) {
				continue
			}
			breaker.Trip(o.bcfg, st, t.now, reason)
			t.dirty[key] = true
			t.event(core.EventBreakerState, name, "", fmt.Sprintf("breaker opened at once for %s: account-wide quota at provider %s", breaker.KeyLabel(key), pname),
				map[string]any{"transition": "→open", "account_wide": true})
		}
	}
	t.event(core.EventProviderQuota, pool, "", fmt.Sprintf("provider %s refused the account: %s; every breaker of %s is open (%d: %s), spawning stops until their cooldown; running workers keep working",
		pname, msg, pname, len(keys), strings.Join(labels, "; ")),
		map[string]any{"provider": pname, "class": core.FailQuota, "keys": keys})
}

// capacityReason is the one block reason for every candidate that
// refused for capacity this tick: "no capacity anywhere" when that was
// all of them.
func capacityReason(tried []string, candidates int) string {
	if len(tried) >= candidates {
		return fmt.Sprintf("not scaling up: no capacity anywhere: all %d candidates refused for capacity this tick (tried %s)", candidates, strings.Join(tried, "; "))
	}
	return fmt.Sprintf("not scaling up: no capacity at %s", strings.Join(tried, "; "))
}

// exitDetail says how an exited instance's agent ended, as its provider
// reported it.
func exitDetail(in *provider.Instance) string {
	if in.ExitDetail != "" {
		return in.ExitDetail
	}
	return "the provider reported it exited"
}
