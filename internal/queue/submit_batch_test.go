package queue

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/google/uuid"
)

// A batch with one bad task is rejected whole, with an error naming the
// task's index and field, and writes nothing: no task, no idempotency key
// (the corrected batch then inserts every task afresh), no callback. Bad
// fields found by validation and the one found against the store (an
// unknown dependency) are checked on both backends.
func TestSubmitBatchWithOneBadTask(t *testing.T) {
	t.Parallel()
	backends := map[string]func(t *testing.T) store.Store{
		"SQLite": openSQLite,
		"PostgreSQL": func(t *testing.T) store.Store {
			pgtest.URL(t)
			return pgtest.Open(t, 4)
		},
	}
	cases := []struct {
		name, field, msg string
		spoil            func(r *SubmitRequest)
	}{
		{"Type", "tasks[7].type", "characters", func(r *SubmitRequest) { r.Type = "bad type!" }},
		{"Params", "tasks[7].params", "object", func(r *SubmitRequest) { r.Params = json.RawMessage(`[1,2]`) }},
		{"Priority", "tasks[7].priority", "between", func(r *SubmitRequest) { p := core.MaxPriority + 1; r.Priority = &p }},
		{"CallbackURL", "tasks[7].callback_url", "http", func(r *SubmitRequest) { r.CallbackURL = "ftp://example.com/hook" }},
		{"DependsOnUnknownTask", "tasks[7].depends_on[0]", "unknown task", func(r *SubmitRequest) { r.DependsOn = []string{uuid.NewString()} }},
		{"DependsOnLaterTask", "tasks[7].depends_on[0]", "later task", func(r *SubmitRequest) { r.DependsOn = []string{"#8"} }},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					st := open(t)
					s := New(st, core.NewFakeClock(storetest.Base), Config{}, nil)
					batch := func() []SubmitRequest {
						reqs := make([]SubmitRequest, 10)
						for i := range reqs {
							reqs[i] = SubmitRequest{
								Type: "render", IdempotencyKey: fmt.Sprintf("k%d", i),
								CallbackURL: "https://example.com/hook",
							}
							if i > 0 {
								reqs[i].DependsOn = []string{fmt.Sprintf("#%d", i-1)}
							}
						}
						return reqs
					}
					reqs := batch()
					tc.spoil(&reqs[7])
					res, err := s.Submit(t.Context(), reqs)
					if res != nil {
						t.Fatalf("Submit returned %d results with the error", len(res))
					}
					wantCode(t, err, core.EINVALID, tc.field, tc.msg)
					if n := taskCount(t, st); n != 0 {
						t.Fatalf("%d tasks written by a rejected batch, want 0", n)
					}
					// Nothing of the rejected batch remains: the corrected
					// batch inserts all ten (no idempotency key was taken).
					res, err = s.Submit(t.Context(), batch())
					if err != nil {
						t.Fatalf("Submit(corrected batch): %v", err)
					}
					for i, r := range res {
						if r.Existing {
							t.Fatalf("tasks[%d] came back as existing after a rejected batch", i)
						}
					}
					if n := taskCount(t, st); n != 10 {
						t.Fatalf("%d tasks after the corrected batch, want 10", n)
					}
				})
			}
		})
	}
}
