package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

func ptr[T any](v T) *T { return &v }

// TestSubmitValidation checks every submit rule. The service has no store
// (nil): any store call would panic, which proves that a rejected submit
// reaches no database at all.
func TestSubmitValidation(t *testing.T) {
	t.Parallel()
	ok := SubmitRequest{Type: "render"}
	big := json.RawMessage(`{"x":"` + strings.Repeat("a", 1_200_000-8) + `"}`)
	if len(big) != 1_200_000 {
		t.Fatalf("test setup: big params is %d bytes", len(big))
	}
	manyDeps := make([]string, core.MaxDependsOn+1)
	for i := range manyDeps {
		manyDeps[i] = uuid.NewString()
	}
	dupID := uuid.NewString()
	many := make([]SubmitRequest, MaxSubmitBatch+1)
	for i := range many {
		many[i] = ok
	}
	with := func(f func(r *SubmitRequest)) []SubmitRequest { r := ok; f(&r); return []SubmitRequest{r} }

	tests := []struct {
		name    string
		reqs    []SubmitRequest
		code    string
		field   string
		message string
	}{
		{"Empty", nil, core.EINVALID, "tasks", "is empty"},
		{"TooManyTasks", many, core.EINVALID, "tasks", "has 1,001 tasks; the limit is 1,000"},
		{"TypeMissing", with(func(r *SubmitRequest) { r.Type = "" }), core.EINVALID, "type", "is required"},
		{"TypeBadChars", with(func(r *SubmitRequest) { r.Type = "a b" }), core.EINVALID, "type", "1-128 characters"},
		{"TypeTooLong", with(func(r *SubmitRequest) { r.Type = strings.Repeat("t", 129) }), core.EINVALID, "type", "1-128"},
		{"ParamsTooLarge", with(func(r *SubmitRequest) { r.Params = big }), core.ETOOLARGE, "params", "is 1,200,000 bytes; the limit is 1,048,576 (1 MiB)"},
		{"ParamsNotObject", with(func(r *SubmitRequest) { r.Params = json.RawMessage(`[1,2]`) }), core.EINVALID, "params", "must be a JSON object"},
		{"ParamsInvalidJSON", with(func(r *SubmitRequest) { r.Params = json.RawMessage(`{"a":`) }), core.EINVALID, "params", "must be a JSON object"},
		{"OwnerBad", with(func(r *SubmitRequest) { r.Owner = "bob smith" }), core.EINVALID, "owner", "1-128"},
		{"OwnerTooLong", with(func(r *SubmitRequest) { r.Owner = strings.Repeat("o", 129) }), core.EINVALID, "owner", "1-128"},
		{"PriorityHigh", with(func(r *SubmitRequest) { r.Priority = ptr(1001) }), core.EINVALID, "priority", "must be between -1000 and 1000"},
		{"PriorityLow", with(func(r *SubmitRequest) { r.Priority = ptr(-1001) }), core.EINVALID, "priority", "must be between -1000 and 1000"},
		{"PoolUpper", with(func(r *SubmitRequest) { r.Pool = "GPU" }), core.EINVALID, "pool", "1-64 characters of a-z"},
		{"PoolTooLong", with(func(r *SubmitRequest) { r.Pool = strings.Repeat("p", 65) }), core.EINVALID, "pool", "1-64"},
		{"MaxAttemptsZero", with(func(r *SubmitRequest) { r.MaxAttempts = ptr(0) }), core.EINVALID, "max_attempts", "between 1 and 100"},
		{"MaxAttemptsHigh", with(func(r *SubmitRequest) { r.MaxAttempts = ptr(101) }), core.EINVALID, "max_attempts", "between 1 and 100"},
		{"MaxLostZero", with(func(r *SubmitRequest) { r.MaxLost = ptr(0) }), core.EINVALID, "max_lost", "between 1 and 100"},
		{"MaxLostHigh", with(func(r *SubmitRequest) { r.MaxLost = ptr(101) }), core.EINVALID, "max_lost", "between 1 and 100"},
		{"TimeoutShort", with(func(r *SubmitRequest) { r.Timeout = ptr(999 * time.Millisecond) }), core.EINVALID, "timeout", "between 1s and 168h"},
		{"TimeoutLong", with(func(r *SubmitRequest) { r.Timeout = ptr(7*24*time.Hour + time.Second) }), core.EINVALID, "timeout", "between 1s and 168h"},
		{"IdempotencyKeyBad", with(func(r *SubmitRequest) { r.IdempotencyKey = "a key" }), core.EINVALID, "idempotency_key", "1-255"},
		{"IdempotencyKeyLong", with(func(r *SubmitRequest) { r.IdempotencyKey = strings.Repeat("k", 256) }), core.EINVALID, "idempotency_key", "1-255"},
		{"DependsOnTooMany", with(func(r *SubmitRequest) { r.DependsOn = manyDeps }), core.EINVALID, "depends_on", "has 257 entries; the limit is 256"},
		{"DependsOnNotID", with(func(r *SubmitRequest) { r.DependsOn = []string{uuid.NewString(), "nope"} }), core.EINVALID, "depends_on[1]", `"nope" is not a task id`},
		{"DependsOnDuplicate", with(func(r *SubmitRequest) { r.DependsOn = []string{dupID, uuid.NewString(), dupID} }), core.EINVALID, "depends_on[2]", "duplicate of depends_on[0]"},
		{"DependsOnSelf", with(func(r *SubmitRequest) { r.DependsOn = []string{"#0"} }), core.EINVALID, "depends_on", "cycle: task depends on itself"},
		{"DependsOnNegative", with(func(r *SubmitRequest) { r.DependsOn = []string{"#-1"} }), core.EINVALID, "depends_on[0]", "is not a task id"},
		{"BatchFieldPrefix", []SubmitRequest{ok, ok, {Type: "x", Priority: ptr(5000)}}, core.EINVALID, "tasks[2].priority", "must be between -1000 and 1000"},
		{"BatchSelfCycle", []SubmitRequest{ok, {Type: "x", DependsOn: []string{"#0", "#1"}}}, core.EINVALID, "tasks[1].depends_on", "cycle: task depends on itself"},
		{"BatchLaterTask", []SubmitRequest{{Type: "x", DependsOn: []string{"#1"}}, ok}, core.EINVALID, "tasks[0].depends_on[0]", "names a later task"},
		{"BatchDuplicateRef", []SubmitRequest{ok, ok, {Type: "x", DependsOn: []string{"#0", "#1", "#0"}}}, core.EINVALID, "tasks[2].depends_on[2]", "duplicate of tasks[2].depends_on[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := New(nil, core.NewFakeClock(time.Unix(1_700_000_000, 0)), Config{}, nil)
			res, err := s.Submit(t.Context(), tt.reqs)
			if err == nil {
				t.Fatalf("Submit accepted invalid input: %+v", res)
			}
			e, isCore := errors.AsType[*core.Error](err)
			if !isCore {
				t.Fatalf("error %v (%T) is not a *core.Error", err, err)
			}
			if e.Code != tt.code || e.Field != tt.field || !strings.Contains(e.Message, tt.message) {
				t.Fatalf("got code=%q field=%q message=%q; want code=%q field=%q message containing %q",
					e.Code, e.Field, e.Message, tt.code, tt.field, tt.message)
			}
		})
	}
}

// TestPrepareDefaults checks the defaults and the resolution of "#N"
// references without a store.
func TestPrepareDefaults(t *testing.T) {
	t.Parallel()
	clock := core.NewFakeClock(time.Unix(1_700_000_000, 0))
	s := New(nil, clock, Config{
		TypePools:    map[string]string{"video": "gpu"},
		TypeTimeouts: map[string]time.Duration{"video": time.Hour},
	}, nil)
	ext := uuid.New()
	tasks, external, err := s.prepare([]SubmitRequest{
		{Type: "thumb"},
		{Type: "video", Params: json.RawMessage(` {"a": 1} `), Priority: ptr(-3), DependsOn: []string{"#0", ext.String()}},
		{Type: "video", Pool: "other", Timeout: ptr(time.Minute), MaxAttempts: ptr(1), MaxLost: ptr(7), Owner: "alice@example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := tasks[0], tasks[1], tasks[2]
	checks := []struct {
		name      string
		got, want any
	}{
		{"a.params", string(a.Params), "{}"},
		{"a.owner", a.Owner, core.DefaultOwner},
		{"a.pool", a.Pool, core.DefaultPool},
		{"a.max_attempts", a.MaxAttempts, core.DefaultMaxAttempts},
		{"a.max_lost", a.MaxLost, core.DefaultMaxLost},
		{"a.timeout", a.Timeout, core.DefaultTaskTimeout},
		{"a.state", a.State, core.TaskQueued},
		{"a.created_at", a.CreatedAt, clock.Now()},
		{"a.run_after", a.RunAfter, clock.Now()},
		{"b.params", string(b.Params), `{"a": 1}`},
		{"b.pool", b.Pool, "gpu"},
		{"b.timeout", b.Timeout, time.Hour},
		{"b.priority", b.Priority, -3},
		{"b.depends_on", fmt.Sprint(b.DependsOn), fmt.Sprint([]uuid.UUID{a.ID, ext})},
		{"b.deps_pending", b.DepsPending, 2},
		{"c.pool", c.Pool, "other"},
		{"c.timeout", c.Timeout, time.Minute},
		{"c.max_attempts", c.MaxAttempts, 1},
		{"c.max_lost", c.MaxLost, 7},
		{"c.owner", c.Owner, "alice@example.com"},
		{"external", fmt.Sprint(external), fmt.Sprint([]extDep{{ext, "tasks[1].depends_on[1]"}})},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	base, limit := 10*time.Second, 10*time.Minute
	tests := []struct {
		failures int
		rnd      float64
		want     time.Duration
	}{
		{1, 0, 5 * time.Second},
		{1, 0.999999999, 10 * time.Second},
		{2, 0, 10 * time.Second},
		{3, 0.5, 30 * time.Second}, // d = 40s, in [20s, 40s]
		{0, 0, 5 * time.Second},    // treated as the first failure
		{7, 0, 5 * time.Minute},    // 640s capped at 600s
		{7, 0.999999999, 10 * time.Minute},
		{200, 0, 5 * time.Minute}, // no overflow
	}
	for _, tt := range tests {
		got := Backoff(tt.failures, base, limit, func() float64 { return tt.rnd })
		if got.Round(time.Millisecond) != tt.want {
			t.Errorf("Backoff(%d, rnd=%v) = %s, want %s", tt.failures, tt.rnd, got, tt.want)
		}
	}
	for f := 1; f < 12; f++ {
		d := min(base<<(f-1), limit)
		got := Backoff(f, base, limit, nil)
		if got < d/2 || got > d {
			t.Errorf("Backoff(%d) = %s, outside [%s, %s]", f, got, d/2, d)
		}
	}
}

func TestCommas(t *testing.T) {
	t.Parallel()
	for in, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1048576: "1,048,576", -1234567: "-1,234,567"} {
		if got := commas(in); got != want {
			t.Errorf("commas(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestTruncateUTF8(t *testing.T) {
	t.Parallel()
	s := "aé€" // 1 + 2 + 3 bytes
	for n, want := range map[int]string{0: "", 1: "a", 2: "a", 3: "aé", 5: "aé", 6: "aé€", 10: "aé€"} {
		if got := truncateUTF8(s, n); got != want {
			t.Errorf("truncateUTF8(%q, %d) = %q, want %q", s, n, got, want)
		}
	}
}
