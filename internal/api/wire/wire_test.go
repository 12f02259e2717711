package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// Task JSON follows the one convention of docs/api.md: snake_case keys,
// durations as seconds under a key ending in _s. A claimed task carries
// its lease token next to the task's fields, and both read back.
func TestTaskJSONConvention(t *testing.T) {
	c := ClaimedTask{Task: core.Task{ID: uuid.New(), Type: "render", Timeout: 90 * time.Minute, MaxAttempts: 3}, LeaseToken: uuid.New()}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["timeout_s"] != float64(5400) || m["lease_token"] != c.LeaseToken.String() || m["type"] != "render" || m["max_attempts"] != float64(3) {
		t.Fatalf("claimed task JSON %s", b)
	}
	if _, ok := m["timeout"]; ok {
		t.Fatalf("task JSON still has a timeout in nanoseconds: %s", b)
	}
	for k := range m {
		if k != strings.ToLower(k) {
			t.Errorf("key %q is not snake_case", k)
		}
	}
	var back ClaimedTask
	if err := json.Unmarshal(b, &back); err != nil || back.Timeout != c.Timeout || back.LeaseToken != c.LeaseToken || back.ID != c.ID {
		t.Fatalf("read back %+v, %v", back, err)
	}
	var plain Task
	if err := json.Unmarshal([]byte(`{"type":"x","timeout":21600000000000}`), &plain); err != nil || plain.Timeout != 6*time.Hour {
		t.Fatalf("an older server's timeout in nanoseconds: %v %v", plain.Timeout, err)
	}
	tb, _ := json.Marshal(&c.Task)
	if !strings.Contains(string(tb), `"timeout_s":5400`) || strings.Contains(string(tb), "lease_token") {
		t.Fatalf("task JSON %s", tb)
	}
}

// BenchmarkClaimedTaskJSON measures the claim reply's encoding of one task
// (go test -bench ClaimedTaskJSON ./internal/api/wire).
func BenchmarkClaimedTaskJSON(b *testing.B) {
	c := []ClaimedTask{{Task: core.Task{ID: uuid.New(), Type: "render", Params: json.RawMessage(`{"frame":12,"scene":"a"}`),
		Owner: "default", Pool: "default", Timeout: 6 * time.Hour, MaxAttempts: 3, MaxLost: 3, State: core.TaskRunning}, LeaseToken: uuid.New()}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(c); err != nil {
			b.Fatal(err)
		}
	}
}

// A claimed task's encoding is byte for byte the one encoding/json writes
// for the task's JSON form plus lease_token, and reads back whole.
func TestClaimedTaskJSONMatchesReflection(t *testing.T) {
	now := time.Date(2026, 12, 5, 15, 4, 5, 123456000, time.UTC)
	wid := uuid.New()
	prog := 0.25
	for _, c := range []ClaimedTask{
		{Task: core.Task{ID: uuid.New(), Type: "render", Params: json.RawMessage(`{"frame":12}`), Owner: "o<1>", Pool: "default",
			Timeout: 6 * time.Hour, MaxAttempts: 3, MaxLost: 3, State: core.TaskRunning, Attempt: 1, WorkerID: &wid,
			LeaseExpiresAt: &now, StartedAt: &now, Progress: &prog, ProgressMsg: "a\nb", CreatedAt: now, RunAfter: now, UpdatedAt: now},
			LeaseToken: uuid.New()},
		{Task: core.Task{ID: uuid.New(), DependsOn: []uuid.UUID{uuid.New()}, IdempotencyKey: "k"}},
	} {
		want, err := json.Marshal(struct {
			core.TaskJSON
			LeaseToken uuid.UUID `json:"lease_token"`
		}{c.Task.JSON(), c.LeaseToken})
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(c)
		if err != nil || string(got) != string(want) {
			t.Fatalf("got %s, %v\nwant %s", got, err, want)
		}
		var back ClaimedTask
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(back)
		if string(again) != string(want) {
			t.Fatalf("read back and encoded again:\n got %s\nwant %s", again, want)
		}
	}
}

// The replies the server writes without reflection are the bytes
// json.Marshal writes for them.
func TestRepliesAppendJSONMatchesReflection(t *testing.T) {
	now := time.Date(2026, 12, 5, 15, 4, 5, 123456000, time.UTC)
	task := &Task{ID: uuid.New(), Type: "x", Params: json.RawMessage(`{"a":"<b>"}`), Owner: "default", Pool: "p",
		State: core.TaskQueued, CreatedAt: now, RunAfter: now, UpdatedAt: now, Timeout: 1500 * time.Millisecond}
	for _, v := range []interface {
		AppendJSON([]byte) ([]byte, error)
	}{
		&ClaimResponse{},
		&ClaimResponse{Tasks: []ClaimedTask{}},
		&ClaimResponse{Tasks: []ClaimedTask{{Task: *task, LeaseToken: uuid.New()}, {Task: *task}}},
		&ClaimResponse{Complete: &CompleteBatchResponse{Lost: []Lease{}}},
		&ClaimResponse{Tasks: []ClaimedTask{{Task: *task, LeaseToken: uuid.New()}},
			Complete: &CompleteBatchResponse{Lost: []Lease{{TaskID: uuid.New(), Token: uuid.New()}}}},
		&SubmitResponse{Task: task, Existing: true},
		&SubmitResponse{},
		&BatchSubmitResponse{},
		&BatchSubmitResponse{Results: []SubmitResponse{{Task: task}, {Task: task, Existing: true}}},
	} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.AppendJSON([]byte("prefix"))
		if err != nil || string(got) != "prefix"+string(want) {
			t.Fatalf("%T: got %s, %v\nwant prefix%s", v, got, err, want)
		}
	}
}
