package status

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// WhyKind is what `drover why` explains.
type WhyKind string

// Kinds of Why.
const (
	WhyTask   WhyKind = "task"
	WhyWorker WhyKind = "worker"
	WhyPool   WhyKind = "pool"
)

// WhyReport is the answer of Why: the current state in one line and the
// events behind it, newest first.
type WhyReport struct {
	Kind WhyKind `json:"kind"`
	ID   string  `json:"id"`
	// State is the current state (task or worker state; for a pool its
	// size and whether it can spawn).
	State string `json:"state"`
	// Summary explains the current state in words ("queued 4m12s: owner
	// alice at limit 5/5").
	Summary string    `json:"summary"`
	Lines   []WhyLine `json:"lines"`
}

// WhyLine is one event of the chain, in words.
type WhyLine struct {
	Time  time.Time `json:"time"`
	AgoS  float64   `json:"ago_s"`
	Kind  string    `json:"kind"`
	Text  string    `json:"text"`
	Event int64     `json:"event_id"`
}

// whyEvents bounds the events of one answer.
const whyEvents = 50

// Why explains the current state of the task, worker or pool id at now
// from its row and its events (read through the events' task, worker and
// pool indexes), newest first. An unknown id is a *core.Error (ENOTFOUND)
// "no task with id …"; an unknown kind is EINVALID naming "kind".
func Why(ctx context.Context, st store.Store, cfg *config.Config, kind WhyKind, id string, now time.Time) (*WhyReport, error) {
	rep := &WhyReport{Kind: kind, ID: id, Lines: []WhyLine{}}
	params := &store.EventListParams{Limit: whyEvents}
	switch kind {
	case WhyTask:
		tid, err := uuid.Parse(id)
		if err != nil {
			return nil, core.Errorf(core.ENOTFOUND, "no task with id %s", id)
		}
		t, err := st.TaskGet(ctx, tid)
		if errors.Is(err, core.ErrNotFound) {
			return nil, core.Errorf(core.ENOTFOUND, "no task with id %s", id)
		} else if err != nil {
			return nil, fmt.Errorf("why: read task %s: %w", id, err)
		}
		rep.ID = t.ID.String()
		rep.State = string(t.State)
		if rep.Summary, err = taskSummary(ctx, st, cfg, t, now); err != nil {
			return nil, err
		}
		params.TaskID = rep.ID
	case WhyWorker:
		wid, err := uuid.Parse(id)
		if err != nil {
			return nil, core.Errorf(core.ENOTFOUND, "no worker with id %s", id)
		}
		w, err := st.WorkerGet(ctx, wid)
		if errors.Is(err, core.ErrNotFound) {
			return nil, core.Errorf(core.ENOTFOUND, "no worker with id %s", id)
		} else if err != nil {
			return nil, fmt.Errorf("why: read worker %s: %w", id, err)
		}
		rep.ID = w.ID.String()
		rep.State = string(w.State)
		rep.Summary = workerSummary(cfg, w, now)
		params.WorkerID = rep.ID
	case WhyPool:
		if _, ok := cfg.Pools[id]; !ok {
			return nil, core.Errorf(core.ENOTFOUND, "no pool named %s", id)
		}
		sum, state, err := poolSummary(ctx, st, cfg, id, now)
		if err != nil {
			return nil, err
		}
		rep.State, rep.Summary = state, sum
		params.Pool = id
		params.Kinds = []core.EventKind{core.EventScaleUp, core.EventScaleDown, core.EventScaleBlocked,
			core.EventBreakerState, core.EventWorkerSpawn, core.EventWorkerFailed, core.EventProviderError}
	default:
		return nil, core.Invalid("kind", "must be task, worker or pool (got %q)", kind)
	}
	evs, err := st.EventList(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("why: list events of %s %s: %w", kind, id, err)
	}
	for _, e := range evs {
		rep.Lines = append(rep.Lines, WhyLine{Time: e.Time, AgoS: now.Sub(e.Time).Seconds(), Kind: string(e.Kind),
			Text: e.Message, Event: e.ID})
	}
	return rep, nil
}

func taskSummary(ctx context.Context, st store.Store, cfg *config.Config, t *core.Task, now time.Time) (string, error) {
	switch t.State {
	case core.TaskQueued:
		wait := fmtDur(now.Sub(t.CreatedAt).Round(time.Second))
		switch {
		case t.DepsPending > 0:
			return fmt.Sprintf("queued %s: waiting for %d of its %d dependencies to succeed", wait, t.DepsPending, len(t.DependsOn)), nil
		case t.RunAfter.After(now):
			return fmt.Sprintf("queued %s: retry backoff until %s (attempt %d, %d failures of max %d)",
				wait, t.RunAfter.UTC().Format("15:04:05"), t.Attempt, t.Failures, t.MaxAttempts), nil
		}
		if limit := cfg.Tasks.OwnerLimit; limit > 0 {
			running, err := st.TaskRunningByOwner(ctx, limit)
			if err != nil {
				return "", fmt.Errorf("why: count running tasks of owner %s: %w", t.Owner, err)
			}
			if n, ok := running[t.Owner]; ok {
				return fmt.Sprintf("queued %s: owner %s at limit %d/%d (tasks.owner_limit)", wait, orStr(t.Owner, `""`), n, limit), nil
			}
		}
		sum, _, err := poolSummary(ctx, st, cfg, t.Pool, now)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("queued %s: claimable; pool %s: %s", wait, t.Pool, sum), nil
	case core.TaskRunning:
		s := fmt.Sprintf("running (attempt %d)", t.Attempt)
		if t.StartedAt != nil {
			s = fmt.Sprintf("running %s (attempt %d)", fmtDur(now.Sub(*t.StartedAt).Round(time.Second)), t.Attempt)
		}
		if t.WorkerID != nil {
			s += " on worker " + t.WorkerID.String()
		}
		if t.Progress != nil {
			s += fmt.Sprintf(", progress %.0f%%", *t.Progress*100)
		}
		return s, nil
	case core.TaskSucceeded:
		return fmt.Sprintf("succeeded at %s after %d %s", finished(t), t.Attempt, plural(t.Attempt, "attempt", "attempts")), nil
	default:
		return fmt.Sprintf("%s at %s: %s (%d handler failures of max %d, %d lost of max %d)",
			t.State, finished(t), orStr(t.Error, "no error recorded"), t.Failures, t.MaxAttempts, t.Lost, t.MaxLost), nil
	}
}

func finished(t *core.Task) string {
	if t.FinishedAt == nil {
		return "?"
	}
	return t.FinishedAt.UTC().Format("2006-01-02 15:04:05")
}

func workerSummary(cfg *config.Config, w *core.Worker, now time.Time) string {
	age := fmtDur(now.Sub(w.CreatedAt).Round(time.Second))
	in := fmtDur(now.Sub(w.StateChangedAt).Round(time.Second))
	switch w.State {
	case core.WorkerRequested, core.WorkerProvisioning:
		return fmt.Sprintf("%s for %s (provision_timeout %s)", w.State, in, fmtDur(provisionTimeoutOf(cfg, w.Pool)))
	case core.WorkerBooting:
		return fmt.Sprintf("booting for %s, age %s: waiting for the first heartbeat (boot_timeout %s)", in, age, fmtDur(bootTimeoutOf(cfg, w.Pool)))
	case core.WorkerReady:
		s := fmt.Sprintf("ready for %s, %s, %d tasks done", in, healthOf(w, now, heartbeatIntervalOf(cfg)), w.TasksDone)
		if w.Running > 0 {
			s += fmt.Sprintf(", %d running", w.Running)
		} else if w.LastTaskAt != nil {
			s += fmt.Sprintf(", idle %s (idle_timeout %s)", fmtDur(now.Sub(*w.LastTaskAt).Round(time.Second)), fmtDur(idleTimeoutOf(cfg, w.Pool)))
		}
		return s
	case core.WorkerFailed, core.WorkerTerminating, core.WorkerTerminated, core.WorkerDraining:
		s := fmt.Sprintf("%s %s ago, at age %s", w.State, in, fmtDur(w.StateChangedAt.Sub(w.CreatedAt).Round(time.Second)))
		if w.Failure != "" {
			s += fmt.Sprintf(": failed (%s)", w.Failure)
		}
		if w.Reason != "" {
			s += ": " + w.Reason
		}
		return s
	}
	return string(w.State)
}

// poolSummary says what a pool has and whether it can spawn.
func poolSummary(ctx context.Context, st store.Store, cfg *config.Config, name string, now time.Time) (summary, state string, err error) {
	rep, err := Build(ctx, st, cfg, now)
	if err != nil {
		return "", "", err
	}
	for _, p := range rep.Pools {
		if p.Name != name {
			continue
		}
		state = "can spawn"
		s := fmt.Sprintf("%d live, %d ready (min %d, max %d), %d claimable, %d running, $%.2f/h", p.Live, p.Ready, p.Min, p.Max, p.Claimable, p.Running, p.SpendPerHour)
		if p.SpawnBlocked != "" {
			state = "spawning blocked"
			s += "; not scaling up: " + p.SpawnBlocked
		}
		for _, br := range rep.Breakers {
			if br.Pool == name && br.State != string(core.BreakerClosed) {
				s += fmt.Sprintf("; breaker %s for %s since %s, %s", br.State, br.Label, hhmm(br.OpenedAt), orStr(br.Reason, br.Summary))
			}
		}
		return s, state, nil
	}
	return "no workers and no work", "idle", nil
}

func hhmm(t *time.Time) string {
	if t == nil {
		return "?"
	}
	return t.UTC().Format("15:04")
}
