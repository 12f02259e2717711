package chaos

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Print writes the result as a table: the invariants (0 expected), the
// reruns by cause, the faults and their recovery times, the throughput.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "chaos run: %d tasks, %d agents max, %d replicas, seed %d, database %s, %.0f s\n\n",
		r.Tasks, r.Agents, r.Replicas, r.Seed, r.Database, r.TotalS)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(name, value, want string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", name, value, want) }
	mark := func(n int) string {
		if n == 0 {
			return "0 ok"
		}
		return fmt.Sprintf("%d BROKEN", n)
	}
	row("INVARIANT", "VALUE", "EXPECTED")
	row("tasks lost", mark(r.TasksLost), "0")
	row("tasks unfinished at the cap", mark(r.TasksUnfinished), "0")
	row("idempotency keys not deduplicated", mark(r.DedupBroken), fmt.Sprintf("0 (of %d re-submits)", r.Resubmitted))
	row("tasks completed twice / result of another grant", mark(r.CompletedTwice), "0")
	row("duplicate spawns", mark(r.DuplicateSpawns), fmt.Sprintf("0 (beyond max %d, two agents for one worker %d, shared instance %d)", r.SpawnsBeyondMax, r.DuplicateAgents, r.SharedInstances))
	row("leaked agent processes after shutdown", mark(r.LeakedProcesses), "0")
	row("", "", "")
	row("RERUNS (attempts that did not finish a task)", "", "")
	row("  handler failure injected", fmt.Sprint(r.Reruns.InjectedFailure), "expected")
	row("  agent SIGKILLed by the harness", fmt.Sprint(r.Reruns.AgentKilled), "expected")
	row("  grant lost, rerun after lease expiry", fmt.Sprint(r.Reruns.GrantLost), "defect (lost grant)")
	row("  granted, never started, other requeue", fmt.Sprint(r.Reruns.NeverStarted), "defect")
	row("  live worker's attempt lost", fmt.Sprint(r.Reruns.LiveWorkerLost), "defect (live worker failed)")
	row("  finished but result not accepted", fmt.Sprint(r.Reruns.ResultRejected), "defect")
	row("  tasks whose handler finished twice", fmt.Sprint(r.HandlerCompletedTwice), "one result recorded")
	row("", "", "")
	row("FAULTS", "", "")
	row("  agents SIGKILLed", fmt.Sprint(r.AgentKills), "")
	row("  leader SIGKILLed → new leader", stat(r.Failover), "p50 / max")
	row("  leader SIGSTOPped → takeover", stat(r.PausedTakeover), fmt.Sprintf("%d pauses without takeover; fenced writes after resume: %g", r.PausesWithoutTakeover, r.FencedWrites))
	row("  PostgreSQL restarted → all ready", stat(r.PGRecovery), "")
	row("  agent kill → task requeued", stat(r.RequeueDelay), fmt.Sprintf("p50 / max (%d not requeued)", r.NotRequeued))
	row("  agent kill → task restarted", stat(r.RestartDelay), "p50 / max")
	row("  workers failed, by class", classes(r.WorkersFailed), "")
	row("  of which the harness did not kill", classes(r.LiveWorkersFailed), "")
	row("  peak agent processes", fmt.Sprint(r.PeakAgents), fmt.Sprintf("≤ %d; stray (worker ended, still running): %d", r.Agents, r.PeakStrayAgents))
	row("", "", "")
	row("THROUGHPUT", "", "")
	row("  calm", fmt.Sprintf("%.2f tasks/s", r.CalmTPS), fmt.Sprintf("over %.0f s", r.CalmS))
	row("  chaos", fmt.Sprintf("%.2f tasks/s", r.ChaosTPS), fmt.Sprintf("over %.0f s (%.0f%% of calm)", r.ChaosS, 100*r.ChaosTPS/max(r.CalmTPS, 1e-9)))
	_ = tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if r.OK() {
		fmt.Fprintln(w, "\nevery invariant held")
		return
	}
	fmt.Fprintln(w)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "FAIL: %s\n", f)
	}
}

func stat(s Stat) string {
	if s.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f s / %.2f s (n=%d)", s.P50S, s.MaxS, s.N)
}

func classes(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
