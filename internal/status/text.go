package status

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/core"
)

// Text renders the report as plain words, section by section, like the
// seed report.
func (r *Report) Text() string {
	var b strings.Builder
	window := fmtDur(secs(r.WindowS))
	fmt.Fprintf(&b, "Drover status — %s UTC\n\n", r.Time.UTC().Format("2006-01-02 15:04:05"))
	fmt.Fprintf(&b, "%s: %s\n", r.Verdict, r.Reason)
	if l := r.Leader; l != nil {
		state := "since " + l.Since.UTC().Format("15:04:05")
		if l.Expired {
			state = "lease expired, no replica leads"
		}
		fmt.Fprintf(&b, "Leader: %s (term %d, %s)\n", l.ID, l.Term, state)
	}
	for _, d := range r.Details {
		fmt.Fprintf(&b, "  - %s\n", d)
	}
	if r.Recovered != "" {
		fmt.Fprintf(&b, "  %s\n", r.Recovered)
	}

	q := r.Queue
	fmt.Fprintf(&b, "\nQueue\n")
	floor := ""
	if q.Capped {
		floor = "at least "
	}
	fmt.Fprintf(&b, "  %s%d queued (%d claimable now", floor, q.Queued, q.Claimable)
	if q.OwnerBlocked > 0 {
		fmt.Fprintf(&b, ", %d held back by owner limits", q.OwnerBlocked)
	}
	fmt.Fprintf(&b, "), %d running\n", q.Running)
	fmt.Fprintf(&b, "  last hour: %d completed, %d failed\n", q.CompletedLastHour, q.FailedLastHour)
	if q.OldestClaimableWaitS != nil {
		fmt.Fprintf(&b, "  oldest claimable task has waited %s\n", fmtDur(secs(*q.OldestClaimableWaitS)))
	}

	w := r.Workers
	fmt.Fprintf(&b, "\nWorkers: %d live", w.Live)
	if parts := stateParts(w.ByState, true); parts != "" {
		fmt.Fprintf(&b, " (%s)", parts)
	}
	if w.Leaving > 0 {
		fmt.Fprintf(&b, "; %d leaving (%s)", w.Leaving, stateParts(w.ByState, false))
	}
	b.WriteString("\n")
	for _, p := range r.Pools {
		fmt.Fprintf(&b, "  pool %s: %d live, %d ready, min %d, max %d, %d %s, $%.2f/h",
			p.Name, p.Live, p.Ready, p.Min, p.Max, p.Candidates, plural(p.Candidates, "candidate", "candidates"), p.SpendPerHour)
		if p.MaxHourlySpend > 0 {
			fmt.Fprintf(&b, " (cap $%.2f/h)", p.MaxHourlySpend)
		}
		if p.SpawnBlocked != "" {
			fmt.Fprintf(&b, "; cannot spawn: %s", p.SpawnBlocked)
		}
		b.WriteString("\n")
	}

	fmt.Fprintf(&b, "\nBreakers\n")
	if len(r.Breakers) == 0 {
		b.WriteString("  (none: no pool has candidate placements)\n")
	}
	for _, br := range r.Breakers {
		fmt.Fprintf(&b, "  %s: %s — %s\n", br.Label, br.State, br.Summary)
		if br.Reason != "" && br.State != string(core.BreakerClosed) {
			fmt.Fprintf(&b, "    opened")
			if br.OpenedAt != nil {
				fmt.Fprintf(&b, " at %s", br.OpenedAt.UTC().Format("15:04:05"))
			}
			fmt.Fprintf(&b, ": %s\n", br.Reason)
		}
	}

	fmt.Fprintf(&b, "\nWorker table\n")
	if len(r.WorkerTable) == 0 {
		b.WriteString("  (none)\n")
	} else {
		tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  ID\tPOOL\tPLACEMENT\tSTATE\tAGE\tLAST HEARTBEAT\tTASKS DONE\tHEALTH\n")
		for _, row := range r.WorkerTable {
			hb := "never"
			if row.HeartbeatAgeS != nil {
				hb = fmt.Sprintf("%ds ago", int(*row.HeartbeatAgeS))
			}
			health := row.Health
			if row.Failure != "" {
				health += " (" + row.Failure + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", row.ID, row.Pool, orStr(row.Placement, "-"), row.State,
				fmtDur(secs(row.AgeS)), hb, row.TasksDone, health)
		}
		_ = tw.Flush()
		if r.WorkerTableOmitted > 0 {
			fmt.Fprintf(&b, "  … and %d more healthy workers (drover workers lists them all)\n", r.WorkerTableOmitted)
		}
	}

	fmt.Fprintf(&b, "\nFailures (last %s)\n", window)
	if len(r.Failures) == 0 {
		b.WriteString("  (none)\n")
	}
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "  %s  worker %s  %s at age %ds  %s: %s\n", f.Time.UTC().Format("15:04:05"), f.WorkerID, f.Class,
			int(f.AgeAtFailureS), breaker.KeyLabel(f.Placement), f.Detail)
	}

	fmt.Fprintf(&b, "\nStart-up (time to first heartbeat, workers ready in the last %s)\n", window)
	if len(r.Startup) == 0 {
		b.WriteString("  (no worker reached ready)\n")
	}
	for _, s := range r.Startup {
		flag := ""
		if s.Slow {
			flag = fmt.Sprintf("  SLOW: p95 above %s", fmtDur(secs(s.ThresholdS)))
		}
		fmt.Fprintf(&b, "  %s: p50 %s, p95 %s over %d %s%s\n", s.Label, fmtDur(secs(s.P50S)), fmtDur(secs(s.P95S)),
			s.Samples, plural(s.Samples, "start", "starts"), flag)
	}

	fmt.Fprintf(&b, "\nSpend\n  now $%.2f/h", r.Spend.PerHour)
	if r.Spend.MaxHourlySpend > 0 {
		fmt.Fprintf(&b, " (global cap $%.2f/h)", r.Spend.MaxHourlySpend)
	}
	fmt.Fprintf(&b, "; last 24 h $%.2f", r.Spend.Last24h)
	var per []string
	for _, p := range r.Pools {
		if p.SpendLast24h > 0 {
			per = append(per, fmt.Sprintf("%s $%.2f", p.Name, p.SpendLast24h))
		}
	}
	if len(per) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(per, ", "))
	}
	b.WriteString("\n")

	if len(r.Hints) > 0 {
		b.WriteString("\nHints\n")
		for _, h := range r.Hints {
			fmt.Fprintf(&b, "  - %s\n", h)
		}
	}
	b.WriteString("\nAction items\n")
	for _, a := range r.Actions {
		fmt.Fprintf(&b, "  - %s\n", a)
	}
	return b.String()
}

var stateOrder = []core.WorkerState{core.WorkerReady, core.WorkerBooting, core.WorkerProvisioning, core.WorkerRequested,
	core.WorkerDraining, core.WorkerTerminating, core.WorkerFailed}

func stateParts(by map[string]int, live bool) string {
	var parts []string
	for _, s := range stateOrder {
		if s.Live() != live {
			continue
		}
		if n := by[string(s)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	return strings.Join(parts, ", ")
}
