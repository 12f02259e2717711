package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// Verdicts of Status.
const (
	VerdictHealthy  = "HEALTHY"
	VerdictDegraded = "DEGRADED"
	VerdictBlocked  = "SPAWNING BLOCKED"
)

// Status is the read model behind `drover status`: the seed report, built
// from the store instead of written by hand.
type Status struct {
	Time    time.Time `json:"time"`
	Verdict string    `json:"verdict"`
	// VerdictReasons say why the verdict is not HEALTHY.
	VerdictReasons []string `json:"verdict_reasons,omitempty"`
	// Window is the look-back of completions and failures (the breaker
	// window).
	Window time.Duration `json:"window"`

	Queue   QueueStatus    `json:"queue"`
	Workers map[string]int `json:"workers"` // live workers by state
	// RecentCompletions counts tasks that succeeded within Window.
	RecentCompletions int              `json:"recent_completions"`
	Breakers          []BreakerReport  `json:"breakers"`
	WorkerTable       []WorkerRow      `json:"worker_table"`
	Failures          []FailureRecord  `json:"recent_failures"`
	Hints             []string         `json:"hints,omitempty"`
	Pools             map[string]Usage `json:"pools"`
	// Leader is the replica that runs the control loop (nil before any
	// election).
	Leader *LeaderStatus `json:"leader,omitempty"`
}

// LeaderStatus names the leader replica and its term.
type LeaderStatus struct {
	ID        string    `json:"id"`
	Term      int64     `json:"term"`
	Since     time.Time `json:"since"`
	ExpiresAt time.Time `json:"expires_at"`
	// Expired is true when the lease ran out and no replica renewed it.
	Expired bool `json:"expired"`
}

// QueueStatus counts tasks.
type QueueStatus struct {
	Queued       int `json:"queued"`
	Claimable    int `json:"claimable"`
	OwnerBlocked int `json:"owner_blocked"`
	Running      int `json:"running"`
	Succeeded    int `json:"succeeded"`
	Failed       int `json:"failed"`
}

// Usage is one pool's size and spend.
type Usage struct {
	Live        int     `json:"live"`
	Ready       int     `json:"ready"`
	HourlySpend float64 `json:"hourly_spend"`
	Min         int     `json:"min"`
	Max         int     `json:"max"`
}

// BreakerReport is one placement key's breaker, with its numbers.
type BreakerReport struct {
	Key     string          `json:"key"`
	Label   string          `json:"label"`
	Reason  string          `json:"reason,omitempty"`
	Summary breaker.Summary `json:"summary"`
}

// WorkerRow is one line of the worker table.
type WorkerRow struct {
	ID        string `json:"id"`
	Pool      string `json:"pool"`
	Placement string `json:"placement"`
	State     string `json:"state"`
	// HeartbeatAge is nil when the worker never beat.
	HeartbeatAge *time.Duration `json:"heartbeat_age,omitempty"`
	Age          time.Duration  `json:"age"`
	TasksDone    int            `json:"tasks_done"`
	Running      int            `json:"running"`
	Health       string         `json:"health"`
}

// FailureRecord is one recent worker failure.
type FailureRecord struct {
	Time      time.Time         `json:"time"`
	WorkerID  string            `json:"worker_id"`
	Class     core.FailureClass `json:"class"`
	Age       time.Duration     `json:"age"` // worker age at failure
	Placement string            `json:"placement"`
	Reason    string            `json:"reason"`
}

// BuildStatus reads the store and explains the fleet at now.
func BuildStatus(ctx context.Context, st store.Store, cfg *config.Config, now time.Time) (*Status, error) {
	bcfg := BreakerConfig(cfg)
	s := &Status{Time: now, Window: bcfg.Window, Workers: map[string]int{}, Pools: map[string]Usage{}}

	counts, err := st.TaskCountByState(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: count tasks: %w", err)
	}
	s.Queue.Queued, s.Queue.Running = counts[core.TaskQueued], counts[core.TaskRunning]
	s.Queue.Succeeded, s.Queue.Failed = counts[core.TaskSucceeded], counts[core.TaskFailed]
	if lr, ok := st.(store.LeaderReader); ok {
		l, err := lr.LeaderGet(ctx)
		switch {
		case err == nil:
			s.Leader = &LeaderStatus{ID: l.LeaderID, Term: l.Term, Since: l.ElectedAt, ExpiresAt: l.ExpiresAt, Expired: !l.ExpiresAt.After(now)}
		case !errors.Is(err, core.ErrNotFound):
			return nil, fmt.Errorf("status: read leader: %w", err)
		}
	}
	demand, err := st.TaskDemand(ctx, &store.TaskDemandParams{Now: now, OwnerLimit: cfg.Tasks.OwnerLimit})
	if err != nil {
		return nil, fmt.Errorf("status: read demand: %w", err)
	}
	for _, d := range demand {
		s.Queue.Claimable += d.Claimable
		s.Queue.OwnerBlocked += d.OwnerBlocked
	}

	done, err := st.TaskList(ctx, &store.TaskListParams{States: []core.TaskState{core.TaskSucceeded}, Limit: 1000})
	if err != nil {
		return nil, fmt.Errorf("status: list recent completions: %w", err)
	}
	for _, t := range done {
		if t.FinishedAt != nil && !t.FinishedAt.Before(now.Add(-s.Window)) {
			s.RecentCompletions++
		}
	}

	workers, err := st.WorkerList(ctx, &store.WorkerListParams{LiveOnly: true})
	if err != nil {
		return nil, fmt.Errorf("status: list workers: %w", err)
	}
	hbTimeout := heartbeatTimeoutOf(cfg)
	hbInterval := orDefault(cfg.HeartbeatInterval, 5*time.Second)
	stale := 0
	for _, w := range workers {
		s.Workers[string(w.State)]++
		row := WorkerRow{ID: w.ID.String(), Pool: w.Pool, Placement: w.Placement, State: string(w.State),
			Age: now.Sub(w.CreatedAt), TasksDone: w.TasksDone, Running: w.Running}
		if w.LastHeartbeatAt != nil {
			a := now.Sub(*w.LastHeartbeatAt)
			row.HeartbeatAge = &a
		}
		row.Health = healthOf(w, row.HeartbeatAge, hbInterval, hbTimeout)
		if row.Health == "STALE" {
			stale++
		}
		s.WorkerTable = append(s.WorkerTable, row)
		u := s.Pools[w.Pool]
		if w.State.Live() {
			u.Live++
		}
		if w.State == core.WorkerReady {
			u.Ready++
		}
		u.HourlySpend += w.PricePerHour
		s.Pools[w.Pool] = u
	}
	for name, pc := range cfg.Pools {
		u := s.Pools[name]
		u.Min, u.Max = pc.Min, pc.Max
		s.Pools[name] = u
	}

	// Breakers: every configured placement, plus any persisted key.
	states, err := st.BreakerGetAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: load breakers: %w", err)
	}
	byKey := map[string]*core.BreakerState{}
	for _, b := range states {
		byKey[b.Key] = b
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Pools)) {
		for _, pl := range cfg.Pools[name].Placements() {
			if _, ok := byKey[pl.Key(name)]; !ok {
				byKey[pl.Key(name)] = breaker.New(pl.Key(name), now)
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		b := byKey[key]
		s.Breakers = append(s.Breakers, BreakerReport{Key: key, Label: breaker.KeyLabel(key), Reason: b.Reason, Summary: breaker.Summarize(bcfg, b, now)})
	}

	evs, err := st.EventList(ctx, &store.EventListParams{Kinds: []core.EventKind{core.EventWorkerFailed}, Since: now.Add(-s.Window), Limit: 500})
	if err != nil {
		return nil, fmt.Errorf("status: list recent failures: %w", err)
	}
	for _, e := range evs {
		var d struct {
			Class     core.FailureClass `json:"class"`
			AgeS      int               `json:"age_s"`
			Placement string            `json:"placement"`
			Reason    string            `json:"reason"`
		}
		_ = json.Unmarshal(e.Data, &d)
		s.Failures = append(s.Failures, FailureRecord{Time: e.Time, WorkerID: e.WorkerID, Class: d.Class,
			Age: time.Duration(d.AgeS) * time.Second, Placement: d.Placement, Reason: d.Reason})
	}
	sort.SliceStable(s.Failures, func(i, j int) bool { return s.Failures[i].Time.Before(s.Failures[j].Time) })

	s.verdict(cfg, now, stale)
	s.hints(cfg)
	return s, nil
}

func healthOf(w *core.Worker, hbAge *time.Duration, interval, timeout time.Duration) string {
	switch w.State {
	case core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting:
		return "INITIALIZING"
	case core.WorkerReady:
		if hbAge == nil || *hbAge > 2*interval {
			return "STALE"
		}
		if w.Running > 0 {
			return "HEALTHY (busy)"
		}
		return "HEALTHY (idle)"
	case core.WorkerDraining:
		return "DRAINING"
	case core.WorkerTerminating:
		if w.Failure != "" {
			return "FAILED (" + string(w.Failure) + ")"
		}
		return "TERMINATING"
	case core.WorkerFailed:
		return "FAILED (" + string(w.Failure) + ")"
	}
	return strings.ToUpper(string(w.State))
}

func (s *Status) verdict(cfg *config.Config, now time.Time, stale int) {
	blockedPools := []string{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Pools)) {
		pls := cfg.Pools[name].Placements()
		if len(pls) == 0 {
			continue
		}
		open := 0
		for _, pl := range pls {
			for _, b := range s.Breakers {
				if b.Key == pl.Key(name) && b.Summary.Status == core.BreakerOpen && b.Summary.Until != nil && now.Before(*b.Summary.Until) {
					open++
				}
			}
		}
		if open == len(pls) {
			blockedPools = append(blockedPools, name)
		}
	}
	for _, b := range s.Breakers {
		if b.Summary.Status != core.BreakerClosed {
			s.VerdictReasons = append(s.VerdictReasons, fmt.Sprintf("breaker %s for %s: %s", b.Summary.Status, b.Label, b.Reason))
		}
	}
	if stale > 0 {
		s.VerdictReasons = append(s.VerdictReasons, fmt.Sprintf("%d ready workers have a stale heartbeat", stale))
	}
	if n := len(s.Failures); n > 0 {
		s.VerdictReasons = append(s.VerdictReasons, fmt.Sprintf("%d workers failed in the last %s", n, fmtDur(s.Window)))
	}
	if s.Queue.Claimable > 0 && s.Workers[string(core.WorkerReady)] == 0 {
		s.VerdictReasons = append(s.VerdictReasons, fmt.Sprintf("%d claimable tasks and no ready worker", s.Queue.Claimable))
	}
	switch {
	case len(blockedPools) > 0:
		s.Verdict = VerdictBlocked
		s.VerdictReasons = append([]string{"every candidate placement of pool " + strings.Join(blockedPools, ", ") + " has an open breaker"}, s.VerdictReasons...)
	case len(s.VerdictReasons) > 0:
		s.Verdict = VerdictDegraded
	default:
		s.Verdict = VerdictHealthy
	}
}

func (s *Status) hints(cfg *config.Config) {
	if len(s.Failures) > 0 {
		byClass := map[core.FailureClass][]FailureRecord{}
		for _, f := range s.Failures {
			byClass[f.Class] = append(byClass[f.Class], f)
		}
		classes := slices.SortedFunc(maps.Keys(byClass), func(a, b core.FailureClass) int {
			if d := len(byClass[b]) - len(byClass[a]); d != 0 {
				return d
			}
			return strings.Compare(string(a), string(b))
		})
		total := len(s.Failures)
		for _, c := range classes {
			fs := byClass[c]
			ages := make([]time.Duration, len(fs))
			for i, f := range fs {
				ages[i] = f.Age
			}
			slices.Sort(ages)
			median := ages[len(ages)/2].Round(time.Second)
			pools := map[string]bool{}
			for _, f := range fs {
				pool, _, _ := strings.Cut(f.Placement, "/")
				pools[pool] = true
			}
			switch c {
			case core.FailBootTimeout:
				for _, pool := range slices.Sorted(maps.Keys(pools)) {
					bt := settingsOf(pool, orEmpty(cfg.Pools[pool])).bootTimeout
					s.Hints = append(s.Hints, fmt.Sprintf("%d of %d recent failures are boot-timeout at ~%d s while boot_timeout is %d s: workers of pool %s need longer than boot_timeout to send their first heartbeat; raise pools.%s.boot_timeout (default 15m) or make the image start faster",
						len(fs), total, int(median.Seconds()), int(bt.Seconds()), pool, pool))
				}
			case core.FailCapacity:
				s.Hints = append(s.Hints, fmt.Sprintf("%d of %d recent failures are capacity errors: add another GPU type or region to the pool's candidates", len(fs), total))
			case core.FailQuota, core.FailInvalidRequest:
				s.Hints = append(s.Hints, fmt.Sprintf("%d recent failures are %s errors: check the provider API key and account balance; the breaker stays open until `drover breaker reset`", len(fs), c))
			case core.FailHeartbeatLost:
				s.Hints = append(s.Hints, fmt.Sprintf("%d of %d recent failures are heartbeat-lost (median age %s): check the agents' network and logs (drover logs --worker ID)", len(fs), total, median))
			case core.FailProvisionTimeout:
				s.Hints = append(s.Hints, fmt.Sprintf("%d of %d recent failures are provision-timeout at ~%d s: the provider is slow to start machines; raise provision_timeout or add candidates", len(fs), total, int(median.Seconds())))
			default:
				s.Hints = append(s.Hints, fmt.Sprintf("%d of %d recent failures are %s", len(fs), total, c))
			}
		}
	}
	if s.Queue.OwnerBlocked > 0 {
		s.Hints = append(s.Hints, fmt.Sprintf("%d queued tasks wait only for their owner's running limit (owner_limit %d); they do not count as demand", s.Queue.OwnerBlocked, cfg.Tasks.OwnerLimit))
	}
	for _, b := range s.Breakers {
		if b.Summary.Status == core.BreakerOpen {
			s.Hints = append(s.Hints, fmt.Sprintf("no spawns on %s: %s; other candidates are still used", b.Label, b.Summary.Verdict))
		}
	}
}

func orEmpty(pc *config.PoolConfig) *config.PoolConfig {
	if pc == nil {
		return &config.PoolConfig{}
	}
	return pc
}

func fmtDur(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if s == "" {
		return "0s"
	}
	return s
}

// Text renders the status as a plain-words report.
func (s *Status) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Drover status — %s UTC\n\n", s.Time.UTC().Format("2006-01-02 15:04:05"))
	fmt.Fprintf(&b, "Verdict: %s\n", s.Verdict)
	if l := s.Leader; l != nil {
		state := "since " + l.Since.UTC().Format("15:04:05")
		if l.Expired {
			state = "lease expired, no replica leads"
		}
		fmt.Fprintf(&b, "Leader: %s (term %d, %s)\n", l.ID, l.Term, state)
	}
	for _, r := range s.VerdictReasons {
		fmt.Fprintf(&b, "  - %s\n", r)
	}
	live := 0
	for _, n := range s.Workers {
		live += n
	}
	fmt.Fprintf(&b, "\nQueue: %d queued (%d claimable now, %d held back by owner limits), %d running\n",
		s.Queue.Queued, s.Queue.Claimable, s.Queue.OwnerBlocked, s.Queue.Running)
	fmt.Fprintf(&b, "Completed: %d tasks in the last %s (%d succeeded, %d failed in total)\n", s.RecentCompletions, fmtDur(s.Window), s.Queue.Succeeded, s.Queue.Failed)
	var parts []string
	for _, st := range []core.WorkerState{core.WorkerReady, core.WorkerBooting, core.WorkerProvisioning, core.WorkerRequested, core.WorkerDraining, core.WorkerTerminating, core.WorkerFailed} {
		if n := s.Workers[string(st)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	fmt.Fprintf(&b, "Workers: %d (%s)\n", live, strings.Join(parts, ", "))
	for _, name := range slices.Sorted(maps.Keys(s.Pools)) {
		u := s.Pools[name]
		fmt.Fprintf(&b, "  pool %s: %d live, %d ready, min %d, max %d, $%.2f/h\n", name, u.Live, u.Ready, u.Min, u.Max, u.HourlySpend)
	}

	fmt.Fprintf(&b, "\nBreakers:\n")
	for _, br := range s.Breakers {
		fmt.Fprintf(&b, "  %s: %s — %s\n", br.Label, br.Summary.Status, br.Summary.String())
		if br.Reason != "" && br.Summary.Status != core.BreakerClosed {
			fmt.Fprintf(&b, "    reason: %s\n", br.Reason)
		}
	}

	fmt.Fprintf(&b, "\nWorkers:\n")
	if len(s.WorkerTable) == 0 {
		fmt.Fprintf(&b, "  (none)\n")
	} else {
		tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  ID\tSTATE\tLAST HEARTBEAT\tTASKS DONE\tHEALTH\n")
		for _, r := range s.WorkerTable {
			hb := "never"
			if r.HeartbeatAge != nil {
				hb = fmt.Sprintf("%ds ago", int(r.HeartbeatAge.Seconds()))
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", r.ID, r.State, hb, r.TasksDone, r.Health)
		}
		_ = tw.Flush()
	}

	fmt.Fprintf(&b, "\nRecent failures (last %s):\n", fmtDur(s.Window))
	if len(s.Failures) == 0 {
		fmt.Fprintf(&b, "  (none)\n")
	}
	for _, f := range s.Failures {
		fmt.Fprintf(&b, "  %s  worker %s  %s after %ds  %s: %s\n", f.Time.UTC().Format("15:04:05"), f.WorkerID, f.Class, int(f.Age.Seconds()), breaker.KeyLabel(f.Placement), f.Reason)
	}
	if len(s.Hints) > 0 {
		fmt.Fprintf(&b, "\nHints:\n")
		for _, h := range s.Hints {
			fmt.Fprintf(&b, "  - %s\n", h)
		}
	}
	return b.String()
}
