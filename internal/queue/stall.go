package queue

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// stallPage bounds one read of a candidate's log lines.
const stallPage = 10000

// Stalled reports whether running task t has gone quiet for its type's
// stall timeout d at now: no progress report (updated_at), no log line
// (lastLog, zero when none) and no start within d.
func Stalled(t *core.Task, lastLog time.Time, d time.Duration, now time.Time) bool {
	if d <= 0 || t.State != core.TaskRunning || t.StartedAt == nil {
		return false
	}
	last := *t.StartedAt
	for _, at := range []time.Time{t.UpdatedAt, lastLog} {
		if at.After(last) {
			last = at
		}
	}
	return now.Sub(last) >= d
}

// StallRunning fails, as a retryable handler failure with error
// core.ReasonStalled (same rules as FailTask, retried at once), every
// running task of a type in timeouts that Stalled says has gone quiet. Log
// lines are read only for tasks whose progress is already older than the
// timeout. It returns the tasks after the change, ordered by id; the
// holding agents learn at their next heartbeat that the lease is gone.
func StallRunning(ctx context.Context, st store.Store, timeouts map[string]time.Duration, now time.Time) ([]*core.Task, error) {
	lastLog := map[uuid.UUID]time.Time{}
	var cands []uuid.UUID
	for _, typ := range slices.Sorted(maps.Keys(timeouts)) {
		d := timeouts[typ]
		ts, err := st.TaskList(ctx, &store.TaskListParams{States: []core.TaskState{core.TaskRunning}, Type: typ, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("stall check: list running %s tasks: %w", typ, err)
		}
		for _, t := range ts {
			if !Stalled(t, time.Time{}, d, now) {
				continue
			}
			ll, err := lastLogAt(ctx, st, t.ID)
			if err != nil {
				return nil, err
			}
			if Stalled(t, ll, d, now) {
				lastLog[t.ID] = ll
				cands = append(cands, t.ID)
			}
		}
	}
	if len(cands) == 0 {
		return []*core.Task{}, nil
	}
	var out []*core.Task
	err := st.Tx(ctx, func(ctx context.Context, tx store.Tx) error {
		ts, err := tx.TaskLock(ctx, &store.TaskLockParams{IDs: cands, State: core.TaskRunning})
		if err != nil {
			return err
		}
		var changed []*core.Task
		for _, t := range ts {
			// Re-check under the lock: progress may have arrived since.
			if Stalled(t, lastLog[t.ID], timeouts[t.Type], now) {
				changed = append(changed, t)
			}
		}
		if err := failAttempts(ctx, tx, changed, core.ReasonStalled, now); err != nil {
			return err
		}
		out = changed
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fail stalled tasks: %w", err)
	}
	if out == nil {
		out = []*core.Task{}
	}
	return out, nil
}

// lastLogAt returns the time of task id's newest log line (zero if none).
func lastLogAt(ctx context.Context, st store.Store, id uuid.UUID) (time.Time, error) {
	var last time.Time
	var after int64
	for {
		lines, err := st.LogList(ctx, &store.LogListParams{TaskID: id.String(), AfterID: after, Limit: stallPage})
		if err != nil {
			return last, fmt.Errorf("stall check: read logs of task %s: %w", id, err)
		}
		for _, l := range lines {
			if l.Time.After(last) {
				last = l.Time
			}
			after = l.ID
		}
		if len(lines) < stallPage {
			return last, nil
		}
	}
}
