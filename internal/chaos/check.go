package chaos

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// Stat is a small distribution: how many, the median and the maximum, in
// seconds.
type Stat struct {
	N    int     `json:"n"`
	P50S float64 `json:"p50_s"`
	MaxS float64 `json:"max_s"`
}

func statOf(ds []time.Duration) Stat {
	if len(ds) == 0 {
		return Stat{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Stat{N: len(s), P50S: s[(len(s)-1)/2].Seconds(), MaxS: s[len(s)-1].Seconds()}
}

// Reruns counts the attempts that did not finish a task, by cause. The
// first two are the designed recoveries; the others are defects.
type Reruns struct {
	// InjectedFailure: the handler failed on purpose (retried).
	InjectedFailure int `json:"injected_failure"`
	// AgentKilled: the harness SIGKILLed the agent running it.
	AgentKilled int `json:"agent_killed"`
	// GrantLost: the task was granted but no handler ever started it, and
	// it came back when its lease expired (a grant lost with a killed
	// replica).
	GrantLost int `json:"grant_lost"`
	// NeverStarted: granted, never started, requeued for another reason.
	NeverStarted int `json:"never_started"`
	// LiveWorkerLost: a handler on an agent the harness did not kill
	// started it and neither finished nor failed (its worker was failed
	// while alive, or the handler was killed).
	LiveWorkerLost int `json:"live_worker_lost"`
	// ResultRejected: the handler finished but the completion was not
	// recorded (its lease was gone), so it ran again.
	ResultRejected int `json:"result_rejected"`
}

// Result is the outcome of a chaos run. Invariants first (0 expected).
type Result struct {
	Tasks    int    `json:"tasks"`
	Agents   int    `json:"agents"`
	Replicas int    `json:"replicas"`
	Seed     int64  `json:"seed"`
	Database string `json:"database"`

	TasksLost       int `json:"tasks_lost"`
	TasksUnfinished int `json:"tasks_unfinished"`
	DedupBroken     int `json:"dedup_broken"`
	CompletedTwice  int `json:"completed_twice"`
	DuplicateSpawns int `json:"duplicate_spawns"`
	LeakedProcesses int `json:"leaked_processes"`
	// DuplicateSpawns is the sum of: workers live while max others
	// already were, workers with two agent processes at once, and workers
	// sharing an instance with another.
	SpawnsBeyondMax int `json:"spawns_beyond_max"`
	DuplicateAgents int `json:"duplicate_agent_processes"`
	SharedInstances int `json:"shared_instances"`

	Reruns Reruns `json:"reruns"`
	// HandlerCompletedTwice counts tasks whose handler ran to its end on
	// two attempts (only one result may be recorded).
	HandlerCompletedTwice int `json:"handler_completed_twice"`
	Resubmitted           int `json:"resubmitted"`

	AgentKills  int `json:"agent_kills"`
	LeaderKills int `json:"leader_kills"`
	Pauses      int `json:"pauses"`
	PGRestarts  int `json:"pg_restarts"`

	Failover       Stat `json:"failover"`
	PausedTakeover Stat `json:"paused_takeover"`
	// PausesWithoutTakeover counts pauses during which no other replica
	// took over (within 3 × leader.ttl + 30 s).
	PausesWithoutTakeover int     `json:"pauses_without_takeover"`
	FencedWrites          float64 `json:"fenced_writes_after_resume"`
	PGRecovery            Stat    `json:"pg_recovery"`
	RequeueDelay          Stat    `json:"requeue_delay"`
	RestartDelay          Stat    `json:"restart_delay"`
	// NotRequeued counts tasks of killed agents with no requeue event
	// after the kill.
	NotRequeued int `json:"not_requeued"`
	// WorkersFailed counts the workers that ended on a failure, by
	// class; LiveWorkersFailed those whose agent the harness did not kill.
	WorkersFailed     map[string]int `json:"workers_failed"`
	LiveWorkersFailed map[string]int `json:"live_workers_failed"`
	PeakAgents        int            `json:"peak_agents"`
	PeakStrayAgents   int            `json:"peak_stray_agents"`

	CalmTPS  float64 `json:"calm_tasks_per_s"`
	ChaosTPS float64 `json:"chaos_tasks_per_s"`
	CalmS    float64 `json:"calm_s"`
	ChaosS   float64 `json:"chaos_s"`
	TotalS   float64 `json:"total_s"`

	Notes    []string `json:"notes,omitempty"`
	Failures []string `json:"failures,omitempty"`
}

// OK reports whether every invariant held.
func (r *Result) OK() bool { return len(r.Failures) == 0 }

// handlerResult is what the handler prints as its result.
type handlerResult struct {
	Attempt int    `json:"attempt"`
	Worker  string `json:"worker"`
}

// analyze checks the invariants and computes the figures.
func analyze(cfg *Config, sub *submitted, ev *evidence) *Result {
	res := &Result{Tasks: cfg.Tasks, Agents: cfg.Agents, Replicas: cfg.Replicas, Seed: cfg.Seed,
		Resubmitted: sub.resubmitted, DedupBroken: sub.dedupBroken,
		WorkersFailed: map[string]int{}, LiveWorkersFailed: map[string]int{}, Notes: ev.notes}

	// Lost, unfinished, deduplicated: every key has exactly one task, the
	// one the first submit returned, and it succeeded.
	byKey := map[string][]*core.Task{}
	for _, t := range ev.tasks {
		byKey[t.IdempotencyKey] = append(byKey[t.IdempotencyKey], t)
	}
	var succeeded []*core.Task
	for key, id := range sub.ids {
		ts := byKey[key]
		if len(ts) == 0 {
			res.TasksLost++
			continue
		}
		res.DedupBroken += len(ts) - 1
		t := ts[0]
		if t.ID.String() != id {
			res.DedupBroken++
		}
		switch t.State {
		case core.TaskSucceeded:
			succeeded = append(succeeded, t)
		case core.TaskQueued, core.TaskRunning:
			res.TasksUnfinished++
		default:
			res.TasksLost++
		}
	}

	killedAt := map[string]time.Time{}
	for _, k := range ev.kills {
		if _, ok := killedAt[k.Worker]; !ok {
			killedAt[k.Worker] = k.At
		}
	}
	requeues := map[string][]*core.Event{}
	for _, e := range ev.requeues {
		requeues[e.TaskID] = append(requeues[e.TaskID], e)
	}
	for _, es := range requeues {
		slices.SortFunc(es, func(a, b *core.Event) int { return a.Time.Compare(b.Time) })
	}

	// Completed twice: every completion adds one to its worker's
	// tasks_done, so more completions than succeeded tasks means a task
	// was completed twice; and the recorded result must come from the
	// task's last grant.
	done := 0
	for _, w := range ev.workers {
		done += w.TasksDone
	}
	if done > len(succeeded) {
		res.CompletedTwice += done - len(succeeded)
	}
	for _, t := range succeeded {
		var hr handlerResult
		if err := json.Unmarshal(t.Result, &hr); err != nil || hr.Attempt != t.Attempt ||
			(t.WorkerID != nil && hr.Worker != t.WorkerID.String()) {
			res.CompletedTwice++
		}
	}

	// Reruns by cause, and the delays after agent kills.
	var requeueDelays, restartDelays []time.Duration
	for _, t := range ev.tasks {
		marks := ev.marks[t.ID.String()]
		completions := 0
		for _, m := range marks {
			if m.Done {
				completions++
			}
		}
		if completions > 1 {
			res.HandlerCompletedTwice++
		}
		last := t.Attempt
		if t.State != core.TaskSucceeded {
			last++ // every attempt so far was cut short
		}
		for a := 1; a < last; a++ {
			m := marks[a]
			switch {
			case m == nil || !m.Started:
				// No handler started this grant: it came back either
				// when its lease expired (the grant never reached an
				// agent) or with its worker (an agent killed between its
				// claim and the handler's start).
				switch rq := requeues[t.ID.String()]; {
				case hasRequeue(rq, "lease expired"):
					res.Reruns.GrantLost++
				case hasRequeue(rq, "worker was lost") && len(ev.kills) > 0:
					res.Reruns.AgentKilled++
				default:
					res.Reruns.NeverStarted++
				}
			case m.Failed:
				res.Reruns.InjectedFailure++
			case isKilled(killedAt, m):
				res.Reruns.AgentKilled++
				k := killedAt[m.Worker]
				if e := firstAfter(requeues[t.ID.String()], k.Add(-time.Second)); e != nil {
					requeueDelays = append(requeueDelays, max(0, e.Time.Sub(k)))
				} else {
					res.NotRequeued++
				}
				if n := marks[a+1]; n != nil && n.Started {
					restartDelays = append(restartDelays, max(0, n.Start.Sub(k)))
				}
			case m.Done:
				res.Reruns.ResultRejected++
			default:
				res.Reruns.LiveWorkerLost++
			}
		}
	}
	res.RequeueDelay, res.RestartDelay = statOf(requeueDelays), statOf(restartDelays)

	// Duplicate spawns: workers live beyond max at once, two agent
	// processes for one worker, two workers on one instance.
	res.SpawnsBeyondMax, res.DuplicateAgents = len(ev.samples.Excess), len(ev.samples.DupProcs)
	byInstance := map[string]int{}
	for _, w := range ev.workers {
		if w.InstanceID != "" {
			if byInstance[w.InstanceID]++; byInstance[w.InstanceID] > 1 {
				res.SharedInstances++
			}
		}
		// A worker that ended on a failure keeps its class (a killed
		// local agent is terminated with class agent-exit).
		if w.Failure != "" {
			res.WorkersFailed[string(w.Failure)]++
			if _, killed := killedAt[w.ID.String()]; !killed {
				res.LiveWorkersFailed[string(w.Failure)]++
			}
		}
	}
	res.DuplicateSpawns = res.SpawnsBeyondMax + res.DuplicateAgents + res.SharedInstances
	res.PeakAgents, res.PeakStrayAgents = ev.samples.PeakAgents, ev.samples.PeakStray
	res.LeakedProcesses = len(ev.leaked)

	res.AgentKills, res.LeaderKills, res.Pauses, res.PGRestarts = len(ev.kills), len(ev.failovers), len(ev.pauses), len(ev.pgDowns)
	res.Failover, res.PGRecovery = statOf(ev.failovers), statOf(ev.pgDowns)
	var takeovers []time.Duration
	for _, p := range ev.pauses {
		if p.NoTakeover {
			res.PausesWithoutTakeover++
			continue
		}
		takeovers = append(takeovers, p.Takeover)
		res.FencedWrites += max(p.Fenced, 0)
	}
	res.PausedTakeover = statOf(takeovers)

	// Throughput: the calm phase against the chaos phase up to the tail
	// (the last 2×agents completions, when the pool runs out of work).
	var fin []time.Time
	for _, t := range succeeded {
		if t.FinishedAt != nil {
			fin = append(fin, *t.FinishedAt)
		}
	}
	slices.SortFunc(fin, func(a, b time.Time) int { return a.Compare(b) })
	tail := ev.chaosEnd
	if i := len(fin) - 2*cfg.Agents; i >= 0 && fin[i].After(ev.calmEnd) {
		tail = fin[i]
	}
	res.CalmS, res.ChaosS = ev.calmEnd.Sub(ev.calmStart).Seconds(), tail.Sub(ev.calmEnd).Seconds()
	calm, chaos := 0, 0
	for _, f := range fin {
		switch {
		case !f.Before(ev.calmStart) && !f.After(ev.calmEnd):
			calm++
		case f.After(ev.calmEnd) && !f.After(tail):
			chaos++
		}
	}
	if res.CalmS > 0 {
		res.CalmTPS = float64(calm) / res.CalmS
	}
	if res.ChaosS > 0 {
		res.ChaosTPS = float64(chaos) / res.ChaosS
	}

	for _, c := range []struct {
		n    int
		what string
	}{
		{res.TasksLost, "tasks lost (missing, failed or cancelled)"},
		{res.TasksUnfinished, "tasks not finished within the run's duration"},
		{res.DedupBroken, "idempotency keys that did not return their first task"},
		{res.CompletedTwice, "tasks completed twice or with a result from another grant"},
		{res.DuplicateSpawns, "duplicate spawns (workers beyond max, two agents for one worker, two workers on one instance)"},
		{res.LeakedProcesses, "agent processes alive after shutdown"},
	} {
		if c.n > 0 {
			res.Failures = append(res.Failures, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	return res
}

// killSlack is how much later than its agent's SIGKILL a handler's start
// marker may be stamped: the handler the agent had just forked runs until
// its parent-death signal lands.
const killSlack = 2 * time.Second

func isKilled(killedAt map[string]time.Time, m *attemptMark) bool {
	k, ok := killedAt[m.Worker]
	return ok && !m.Start.After(k.Add(killSlack))
}

// hasRequeue reports whether one of a task's requeue events says why.
func hasRequeue(es []*core.Event, why string) bool {
	for _, e := range es {
		if strings.Contains(e.Message, why) {
			return true
		}
	}
	return false
}

func firstAfter(es []*core.Event, t time.Time) *core.Event {
	for _, e := range es {
		if !e.Time.Before(t) {
			return e
		}
	}
	return nil
}
