package queue

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// UnreportedGrace returns the default grace of Config.UnreportedGrace for
// a heartbeat interval and timeout: three intervals, and at least a
// quarter of the timeout, which is longer than any one heartbeat request
// of the agent may take (so a beat built before a claim's answer reached
// the agent never releases that claim).
func UnreportedGrace(interval, timeout time.Duration) time.Duration {
	return max(3*interval, timeout/4)
}

// unreportedLeases is the rule for grants that never reached their worker:
// of the tasks the server holds for a worker (running under its lease),
// those granted more than grace before now whose lease the worker's
// heartbeats do not report. The agent reports every task from the claim's
// answer until its completion or failure is acknowledged (uploads and
// reports in flight included), so a held task it does not report is one
// whose claim answer was lost — typically with a replica killed between
// committing the claim and answering it.
func unreportedLeases(held []*core.Task, reported map[core.Lease]bool, now time.Time, grace time.Duration) []core.Lease {
	var out []core.Lease
	for _, t := range held {
		if t.State != core.TaskRunning || t.LeaseToken == nil || t.StartedAt == nil {
			continue
		}
		l := core.Lease{TaskID: t.ID, Token: *t.LeaseToken}
		if reported[l] || now.Sub(*t.StartedAt) <= grace {
			continue
		}
		out = append(out, l)
	}
	return out
}

// releaseUnreported releases, for each worker of a heartbeat group commit
// that holds more tasks than its heartbeats reported, the grants it never
// received (unreportedLeases): back to queued as if never claimed (no
// attempt, no loss counted), with a task.requeued event each. Errors are
// logged: the heartbeats themselves have been committed.
func (s *Service) releaseUnreported(ctx context.Context, now time.Time, workers []uuid.UUID, reported map[uuid.UUID]map[core.Lease]bool) {
	if s.cfg.UnreportedGrace <= 0 {
		return
	}
	running := core.TaskRunning
	for _, id := range workers {
		held, err := s.st.TaskList(ctx, &store.TaskListParams{States: []core.TaskState{running}, WorkerID: &id, Limit: 1000})
		if err != nil {
			s.logger.WarnContext(ctx, "list tasks held by a worker", slog.String("worker", id.String()), slog.String("err", err.Error()))
			continue
		}
		release := unreportedLeases(held, reported[id], now, s.cfg.UnreportedGrace)
		if len(release) == 0 {
			continue
		}
		n, err := s.Release(ctx, id, release)
		if err != nil {
			s.logger.WarnContext(ctx, "release grants the worker does not report", slog.String("worker", id.String()), slog.String("err", err.Error()))
			continue
		}
		if n == 0 {
			continue
		}
		byID := map[uuid.UUID]*core.Task{}
		for _, t := range held {
			byID[t.ID] = t
		}
		evs := make([]*core.Event, 0, len(release))
		for _, l := range release {
			t := byID[l.TaskID]
			msg := fmt.Sprintf("worker %s does not report the lease granted %s ago (the claim's answer never reached it); released, not counted",
				id, now.Sub(*t.StartedAt).Round(time.Millisecond))
			evs = append(evs, taskEvent(now, core.EventTaskRequeued, t, msg))
		}
		s.logger.InfoContext(ctx, "released grants the worker never received", slog.String("worker", id.String()), slog.Int("tasks", n))
		s.emit(ctx, evs...)
	}
}
