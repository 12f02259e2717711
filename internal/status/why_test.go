package status_test

import (
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/status"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

func TestWhy(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		f := seedBlocked(t, st)
		ctx := t.Context()

		rep, err := status.Why(ctx, st, f.cfg, status.WhyPool, "default", now)
		if err != nil {
			t.Fatalf("why pool: %v", err)
		}
		eq(t, "pool state", rep.State, "spawning blocked")
		contains(t, "pool summary", rep.Summary, "not scaling up: the breaker of its only placement is open; next canary at 19:23:02")
		contains(t, "pool summary", rep.Summary, "breaker open for pool=default gpu=RTX4090 region=EU-RO-1 since 19:13, 5/5 recent starts failed (boot-timeout)")
		if len(rep.Lines) != 6 {
			t.Fatalf("pool lines = %d, want the 6 failures", len(rep.Lines))
		}
		if !rep.Lines[0].Time.After(rep.Lines[5].Time) {
			t.Errorf("lines are not newest first: %v … %v", rep.Lines[0].Time, rep.Lines[5].Time)
		}

		failed := rep.Lines[0]
		var w struct{ id string }
		for _, l := range rep.Lines {
			if l.Kind == string(core.EventWorkerFailed) {
				w.id = strings.Fields(l.Text)[1]
				failed = l
				break
			}
		}
		wrep, err := status.Why(ctx, st, f.cfg, status.WhyWorker, w.id, now)
		if err != nil {
			t.Fatalf("why worker: %v", err)
		}
		eq(t, "worker state", wrep.State, string(core.WorkerTerminated))
		contains(t, "worker summary", wrep.Summary, "failed (boot-timeout): no heartbeat")
		eq(t, "worker lines", len(wrep.Lines), 1)
		eq(t, "worker line", wrep.Lines[0].Text, failed.Text)

		tasks, err := st.TaskList(ctx, &store.TaskListParams{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		trep, err := status.Why(ctx, st, f.cfg, status.WhyTask, tasks[0].ID.String(), now)
		if err != nil {
			t.Fatalf("why task: %v", err)
		}
		contains(t, "task summary", trep.Summary, "queued 40m: claimable; pool default: 0 live, 0 ready (min 0, max 5), 3 claimable, 0 running, $0.00/h; not scaling up")

		for _, c := range []struct {
			kind status.WhyKind
			id   string
			want string
		}{
			{status.WhyTask, uuid.NewString(), "no task with id "},
			{status.WhyTask, "not-a-uuid", "no task with id not-a-uuid"},
			{status.WhyWorker, uuid.NewString(), "no worker with id "},
			{status.WhyPool, "cpu", "no pool named cpu"},
		} {
			_, err := status.Why(ctx, st, f.cfg, c.kind, c.id, now)
			eq(t, "code of unknown "+string(c.kind), core.ErrorCode(err), core.ENOTFOUND)
			if err != nil {
				contains(t, "message", err.Error(), c.want)
			}
		}
		_, err = status.Why(ctx, st, f.cfg, "queue", "x", now)
		eq(t, "unknown kind", core.ErrorCode(err), core.EINVALID)
	})
}

func TestWhyTaskOwnerAtLimit(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		f := seedRecovered(t, st)
		f.cfg.Tasks.OwnerLimit = 2
		tasks, err := st.TaskList(t.Context(), &store.TaskListParams{States: []core.TaskState{core.TaskQueued}})
		if err != nil || len(tasks) != 1 {
			t.Fatalf("queued tasks = %d, %v", len(tasks), err)
		}
		rep, err := status.Why(t.Context(), st, f.cfg, status.WhyTask, tasks[0].ID.String(), now)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "summary", rep.Summary, "queued 40m: owner alice at limit 2/2 (tasks.owner_limit)")
		r := f.report()
		contains(t, "hints", strings.Join(r.Hints, "\n"), "claimable 0 although 1 queued: owner alice at its limit 2/2")
	})
}
