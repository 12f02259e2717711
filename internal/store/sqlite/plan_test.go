package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
)

// The reads of status and why use an index, never a full scan of events
// or tasks, whatever their size (the plans SQLite chooses for the queries
// EventList, EventRecent, TaskFinishedCount and TaskOldestReady run).
func TestStatusReadsUseIndexes(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "drover.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    string
		args []any
		want string // a part the plan must have, when set
	}{
		{`SELECT id FROM events WHERE task_id = ? ORDER BY id DESC LIMIT ?`, []any{"t", 50}, ""},
		{`SELECT id FROM events WHERE worker_id = ? ORDER BY id DESC LIMIT ?`, []any{"w", 50}, ""},
		{`SELECT id FROM events WHERE kind IN (?, ?) AND pool = ? ORDER BY id DESC LIMIT ?`, []any{"a", "b", "p", 50}, ""},
		{`SELECT id FROM events WHERE kind IN (?) AND time >= ? ORDER BY id DESC LIMIT ?`, []any{"worker.failed", 0, 200}, ""},
		{`SELECT id FROM events WHERE id > ? ORDER BY id LIMIT ?`, []any{10, 1000}, ""},
		{`SELECT state, count(*) FROM tasks WHERE finished_at > ? AND finished_at <= ? GROUP BY state`, []any{0, 1}, "COVERING INDEX tasks_finished_state"},
		// The events page filtered by kind: a backward range of (kind, id).
		{`SELECT id FROM events WHERE kind IN (?) ORDER BY id DESC LIMIT ?`, []any{"worker.failed", 50}, "events_kind_id"},
		// EventRecent: one backward range of (kind, time) per kind.
		{`SELECT * FROM (SELECT id, time FROM events WHERE kind = ? AND time >= ? ORDER BY time DESC LIMIT ?)
			UNION ALL SELECT * FROM (SELECT id, time FROM events WHERE kind = ? AND time >= ? ORDER BY time DESC LIMIT ?)
			ORDER BY time DESC, id DESC LIMIT ?`, []any{"task.failed", 0, 1000, "task.requeued", 0, 1000, 1000}, "events_kind_time"},
		{`SELECT created_at FROM tasks WHERE state = 'queued' AND run_after <= ? AND deps_pending = 0 ORDER BY created_at LIMIT 1`, []any{0}, ""},
		{`SELECT owner, count(*) FROM tasks WHERE state = 'running' GROUP BY owner HAVING count(*) >= ?`, []any{5}, ""},
		{`SELECT placement, created_at, ready_at FROM workers WHERE ready_at > ? AND ready_at <= ? ORDER BY ready_at DESC LIMIT ?`, []any{0, 1, 1000}, ""},
	} {
		rows, err := s.rdb.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+c.q, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		_ = rows.Close()
		if c.want != "" && !strings.Contains(strings.Join(plan, "; "), c.want) {
			t.Errorf("%s\n  plan without %s: %s", c.q, c.want, strings.Join(plan, "; "))
		}
		for _, p := range plan {
			// "SCAN t USING … INDEX" walks a (partial) index in order:
			// the queued or running tasks only, stopping at LIMIT.
			if (strings.HasPrefix(p, "SCAN events") || strings.HasPrefix(p, "SCAN tasks") || strings.HasPrefix(p, "SCAN workers")) && !strings.Contains(p, "INDEX") {
				t.Errorf("%s\n  scans: %s", c.q, strings.Join(plan, "; "))
			}
		}
	}
}
