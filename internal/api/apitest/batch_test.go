package apitest

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/sqlite"
)

// POST /v1/tasks/batch with one bad task (index 7) answers 400 naming
// tasks[7] and the field, and writes nothing; the corrected batch is then
// accepted whole. On SQLite and PostgreSQL.
func TestBatchSubmitOneBadTaskWritesNothing(t *testing.T) {
	t.Parallel()
	backends := map[string]func(t *testing.T) store.Store{
		"SQLite": func(t *testing.T) store.Store {
			st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "api.db"))
			if err != nil {
				t.Fatalf("open sqlite: %v", err)
			}
			if _, err := st.Migrate(t.Context()); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			return st
		},
		"PostgreSQL": func(t *testing.T) store.Store {
			pgtest.URL(t)
			return pgtest.Open(t, 4)
		},
	}
	cases := []struct {
		name, bad, field, msg string
	}{
		{"Type", `{"type": "bad type!"}`, "tasks[7].type", "characters"},
		{"Params", `{"type": "render", "params": [1, 2]}`, "tasks[7].params", "object"},
		{"Priority", `{"type": "render", "priority": 100000}`, "tasks[7].priority", "between"},
		{"CallbackURL", `{"type": "render", "callback_url": "ftp://example.com/hook"}`, "tasks[7].callback_url", "http"},
		{"UnknownField", `{"type": "render", "colour": "red"}`, "tasks[7].colour", "unknown"},
		{"DependsOnUnknownTask", `{"type": "render", "depends_on": ["0193a4b2-0000-7000-8000-000000000000"]}`, "tasks[7].depends_on[0]", "unknown task"},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					b := setupOn(t, open(t), nil, nil)
					body := func(bad string) []byte {
						items := make([]string, 10)
						for i := range items {
							items[i] = fmt.Sprintf(`{"type": "render", "idempotency_key": "k%d", "callback_url": "https://example.com/hook"}`, i)
						}
						if bad != "" {
							items[7] = bad
						}
						return []byte(`{"tasks": [` + strings.Join(items, ", ") + `]}`)
					}
					code, e := b.raw(t, http.MethodPost, "/v1/tasks/batch", opToken, body(tc.bad))
					if code != http.StatusBadRequest || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
						t.Fatalf("got %d %+v; want 400 naming %s with %q", code, e, tc.field, tc.msg)
					}
					if n := b.taskCount(t); n != 0 {
						t.Fatalf("%d tasks written by a rejected batch, want 0", n)
					}
					code, _ = b.raw(t, http.MethodPost, "/v1/tasks/batch", opToken, body(""))
					if code != http.StatusCreated {
						t.Fatalf("corrected batch: status %d, want 201", code)
					}
					if n := b.taskCount(t); n != 10 {
						t.Fatalf("%d tasks after the corrected batch, want 10", n)
					}
				})
			}
		})
	}
}
