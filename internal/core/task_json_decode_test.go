package core

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// referenceDecode is what UnmarshalJSON did before the fast path: decode
// the JSON form with encoding/json.
func referenceDecode(b []byte, withLease bool) (Task, uuid.UUID, error) {
	var in struct {
		TaskJSON
		LeaseToken uuid.UUID `json:"lease_token"`
	}
	var err error
	if withLease {
		err = json.Unmarshal(b, &in)
	} else {
		err = json.Unmarshal(b, &in.TaskJSON)
	}
	if err != nil {
		return Task{}, uuid.UUID{}, err
	}
	return in.TaskJSON.Task(), in.LeaseToken, nil
}

func checkDecode(t *testing.T, b []byte, withLease bool) {
	t.Helper()
	want, wantTok, wantErr := referenceDecode(b, withLease)
	var got Task
	var tok uuid.UUID
	var err error
	if withLease {
		err = DecodeTaskJSON(b, &got, &tok)
	} else {
		err = DecodeTaskJSON(b, &got, nil)
	}
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%s: error %v, encoding/json says %v", b, err, wantErr)
	}
	if err == nil && (!reflect.DeepEqual(got, want) || tok != wantTok) {
		t.Fatalf("%s:\n got %+v %s\nwant %+v %s", b, got, tok, want, wantTok)
	}
}

// TestDecodeTaskJSONMatchesReflection: what the API writes is read on the
// fast path, and every input (the API's form, other spellings, invalid
// JSON) decodes to what encoding/json decodes.
func TestDecodeTaskJSONMatchesReflection(t *testing.T) {
	now := time.Date(2026, 12, 5, 15, 4, 5, 123456000, time.UTC)
	wid := uuid.New()
	prog := 0.75
	full := Task{ID: uuid.New(), Type: "render", Params: json.RawMessage(`{"frame":12,"s":"a\"}b","n":[1,{"x":null}]}`),
		Owner: "default", Priority: -3, Pool: "gpu", DependsOn: []uuid.UUID{uuid.New(), uuid.New()}, MaxAttempts: 3, MaxLost: 2,
		Timeout: 90 * time.Minute, IdempotencyKey: "k1", State: TaskRunning, Attempt: 1, Failures: 2, Lost: 1, DepsPending: 0,
		WorkerID: &wid, LeaseExpiresAt: &now, Result: json.RawMessage(`{"ok":true}`), Error: "boom", Progress: &prog,
		ProgressMsg: "half", CreatedAt: now, RunAfter: now.Add(time.Second), StartedAt: &now, FinishedAt: &now, UpdatedAt: now}
	plain := Task{ID: uuid.New(), Type: "x", Params: json.RawMessage(`{}`), State: TaskQueued, CreatedAt: now, RunAfter: now, UpdatedAt: now}
	for _, task := range []Task{full, plain, {}} {
		b, err := task.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeTaskJSON(b, false, nil); err != nil {
			t.Fatalf("the API's own form is not on the fast path: %s", b)
		}
		checkDecode(t, b, false)
		withTok := append(b[:len(b)-1:len(b)-1], `,"lease_token":"`+uuid.NewString()+`"}`...)
		var tok uuid.UUID
		if _, err := decodeTaskJSON(withTok, true, &tok); err != nil {
			t.Fatalf("a claimed task is not on the fast path: %s", withTok)
		}
		checkDecode(t, withTok, true)
		checkDecode(t, withTok, false)
	}
	id := uuid.NewString()
	for _, s := range []string{
		`{}`, ` { "id" : "` + id + `" , "type" : "a" } `, `{"ID":"` + id + `"}`, `{"type":"\u0041\n"}`, `{"type":"é"}`,
		`{"type":"bad \xff"}`, `{"timeout":21600000000000}`, `{"timeout_s":1.5,"timeout":5}`, `{"unknown":1,"type":"a"}`,
		`{"params":null}`, `{"params":"text"}`, `{"params":[1, 2 ]}`, `{"params":{"a":"}"}}`, `{"params":{"a":"\\"}}`,
		`{"worker_id":null}`, `{"depends_on":null}`, `{"depends_on":[]}`, `{"depends_on":["` + id + `","` + id + `"]}`,
		`{"priority":1.5}`, `{"priority":-0}`, `{"priority":1e2}`, `{"priority":99999999999999999999}`, `{"progress":1e400}`,
		`{"progress":-0.0}`, `{"timeout_s":1e-7}`, `{"id":"{` + id + `}"}`, `{"id":"urn:uuid:` + id + `"}`, `{"id":"nope"}`,
		`{"created_at":"2026-12-05T15:04:05+01:00"}`, `{"created_at":"yesterday"}`, `{"created_at":null}`,
		`{"type":"a","type":"b"}`, `{"type":"a",}`, `{"type" "a"}`, `{"type":"a"} x`, `[1]`, `null`, `{`, `{"params":{"a":1}`,
		`{"state":"running","attempt":"1"}`, `{"lease_token":"` + id + `"}`, `{"lease_token":null}`, `{"result":{}}`,
		`{"progress":01}`, `{"progress":1.}`, `{"progress":.5}`, `{"progress":-}`, `{"progress":1e}`, `{"error":"` + strings.Repeat("x", 300) + `"}`,
	} {
		checkDecode(t, []byte(s), false)
		checkDecode(t, []byte(s), true)
	}
}

// FuzzDecodeTaskJSON: any input decodes to what encoding/json decodes
// (go test -fuzz FuzzDecodeTaskJSON ./internal/core).
func FuzzDecodeTaskJSON(f *testing.F) {
	now := time.Date(2026, 12, 5, 15, 4, 5, 123456000, time.UTC)
	b, _ := (&Task{ID: uuid.New(), Type: "x", Params: json.RawMessage(`{"a":[1,"]"]}`), CreatedAt: now, StartedAt: &now}).AppendJSON(nil)
	f.Add(b, false)
	f.Add([]byte(`{"lease_token":"`+uuid.NewString()+`","timeout_s":2}`), true)
	f.Add([]byte(`{"depends_on":[],"progress":1e-7}`), false)
	f.Fuzz(func(t *testing.T, b []byte, withLease bool) {
		checkDecode(t, b, withLease)
	})
}
