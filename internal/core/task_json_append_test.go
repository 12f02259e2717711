package core

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestTaskAppendJSONMatchesReflection holds AppendJSON to encoding/json's
// encoding of t.JSON(), byte for byte, over tasks with every optional
// field set or not, strings that need escaping, raw JSON with spaces and
// HTML characters, and floats at the format's cutoffs.
func TestTaskAppendJSONMatchesReflection(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	strs := []string{"", "a", "train.resnet", "with \"quotes\" and \\", "<b>&</b>", "tab\tnl\ncr\r\x01\x1f",
		"héllo wörld", "\u2028\u2029", "bad \xff utf8", "emoji 🚀", "\b\f"}
	raws := []json.RawMessage{nil, json.RawMessage(`{}`), json.RawMessage(`{"a":1,"b":[1,2,{"c":null}]}`),
		json.RawMessage(` { "a" : "x < y" , "b":"\u2028" } `), json.RawMessage(`{"html":"<&>"}`),
		json.RawMessage(`{"s":"é"}`), json.RawMessage(`[]`), json.RawMessage(`null`)}
	floats := []float64{0, 1, 0.5, 97.25, 1e-7, 1e-6, 123456789, 1e21, 1e20, 3.3333333333333335, -2.5e-9, 1.7976931348623157e308}
	times := []time.Time{
		time.Date(2026, 12, 5, 15, 4, 5, 123456000, time.UTC),
		time.Date(2026, 12, 5, 15, 4, 5, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600+1800)),
		time.Date(2026, 1, 2, 3, 4, 5, 6, time.Local),
	}
	pick := func(n int) int { return rng.IntN(n) }
	for i := range 3000 {
		id, wid := uuid.New(), uuid.New()
		tm := times[pick(len(times))]
		prog := floats[pick(len(floats))]
		task := Task{
			ID: id, Type: strs[pick(len(strs))], Params: raws[pick(len(raws))], Owner: strs[pick(len(strs))],
			Priority: rng.IntN(200) - 100, Pool: strs[pick(len(strs))], MaxAttempts: pick(5), MaxLost: pick(5),
			Timeout:        time.Duration(rng.Int64N(int64(48 * time.Hour))),
			IdempotencyKey: strs[pick(len(strs))], State: TaskState(strs[pick(len(strs))]),
			Attempt: pick(9), Failures: pick(9), Lost: pick(9), DepsPending: pick(9),
			Result: raws[pick(len(raws))], Error: strs[pick(len(strs))], ProgressMsg: strs[pick(len(strs))],
			CreatedAt: tm, RunAfter: times[pick(len(times))], UpdatedAt: times[pick(len(times))],
		}
		if i%2 == 0 {
			task.DependsOn = []uuid.UUID{uuid.New(), uuid.New()}
			task.WorkerID = &wid
			task.LeaseExpiresAt = &tm
			task.Progress = &prog
			task.StartedAt, task.FinishedAt = &tm, &times[pick(len(times))]
			task.Timeout = time.Duration(floats[pick(len(floats))] * float64(time.Second))
		}
		want, wantErr := json.Marshal(task.JSON())
		got, gotErr := task.AppendJSON(nil)
		if (wantErr != nil) != (gotErr != nil) {
			t.Fatalf("task %d: error %v, encoding/json says %v", i, gotErr, wantErr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("task %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestTaskAppendJSONErrors: values encoding/json refuses are refused.
func TestTaskAppendJSONErrors(t *testing.T) {
	nan := math.NaN()
	for name, task := range map[string]Task{
		"bad params": {Params: json.RawMessage(`{`)},
		"nan":        {Params: json.RawMessage(`{}`), Progress: &nan},
		"year 10000": {Params: json.RawMessage(`{}`), CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"bad result": {Params: json.RawMessage(`{}`), Result: json.RawMessage(`{"a":}`)},
	} {
		if _, err := task.AppendJSON(nil); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := json.Marshal(task.JSON()); err == nil {
			t.Errorf("%s: encoding/json encodes it", name)
		}
	}
}
