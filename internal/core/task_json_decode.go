package core

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// errSlowPath makes decodeTaskJSON hand the input to encoding/json.
var errSlowPath = errors.New("task JSON: not on the fast path")

// DecodeTaskJSON reads a task's JSON form (what AppendJSON writes) into
// t, and the "lease_token" key of a claimed task into leaseToken when that
// is not nil. It decodes what encoding/json decodes, with the same result:
// the exact form the API writes is read in one pass without reflection,
// anything else (escapes, unknown or legacy keys, nulls, other spellings)
// goes through encoding/json.
func DecodeTaskJSON(b []byte, t *Task, leaseToken *uuid.UUID) error {
	var tok uuid.UUID
	fast, err := decodeTaskJSON(b, leaseToken != nil, &tok)
	if err == nil {
		*t = fast
		if leaseToken != nil {
			*leaseToken = tok
		}
		return nil
	}
	if leaseToken == nil {
		var in TaskJSON
		if err := json.Unmarshal(b, &in); err != nil {
			return err
		}
		*t = in.Task()
		return nil
	}
	var in struct {
		TaskJSON
		LeaseToken uuid.UUID `json:"lease_token"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*t, *leaseToken = in.TaskJSON.Task(), in.LeaseToken
	return nil
}

// taskDecoder walks one JSON object; any surprise is errSlowPath.
type taskDecoder struct {
	b []byte
	i int
}

func (d *taskDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// str reads a string without escapes or bytes outside ASCII and returns
// its contents (a slice of the input).
func (d *taskDecoder) str() ([]byte, error) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, errSlowPath
	}
	start := d.i + 1
	for j := start; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			d.i = j + 1
			return d.b[start:j], nil
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return nil, errSlowPath
		}
	}
	return nil, errSlowPath
}

// num reads a JSON number and returns its text.
func (d *taskDecoder) num() ([]byte, error) {
	d.ws()
	start := d.i
	j := start
	if j < len(d.b) && d.b[j] == '-' {
		j++
	}
	switch {
	case j < len(d.b) && d.b[j] == '0':
		j++
	case j < len(d.b) && d.b[j] >= '1' && d.b[j] <= '9':
		j = d.digits(j)
	default:
		return nil, errSlowPath
	}
	if j < len(d.b) && d.b[j] == '.' {
		j++
		k := j
		if j = d.digits(j); j == k {
			return nil, errSlowPath
		}
	}
	if j < len(d.b) && (d.b[j] == 'e' || d.b[j] == 'E') {
		j++
		if j < len(d.b) && (d.b[j] == '+' || d.b[j] == '-') {
			j++
		}
		k := j
		if j = d.digits(j); j == k {
			return nil, errSlowPath
		}
	}
	d.i = j
	return d.b[start:j], nil
}

// digits returns the index of the first byte at or after j that is not
// an ASCII digit.
func (d *taskDecoder) digits(j int) int {
	for j < len(d.b) && d.b[j] >= '0' && d.b[j] <= '9' {
		j++
	}
	return j
}

func (d *taskDecoder) integer() (int, error) {
	n, err := d.num()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(string(n), 10, 0)
	if err != nil {
		return 0, errSlowPath
	}
	return int(v), nil
}

func (d *taskDecoder) float64() (float64, error) {
	n, err := d.num()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return 0, errSlowPath
	}
	return v, nil
}

func (d *taskDecoder) id() (uuid.UUID, error) {
	s, err := d.str()
	if err != nil || len(s) != 36 {
		return uuid.UUID{}, errSlowPath
	}
	id, err := uuid.ParseBytes(s)
	if err != nil {
		return uuid.UUID{}, errSlowPath
	}
	return id, nil
}

func (d *taskDecoder) stamp() (time.Time, error) {
	start := d.i
	if _, err := d.str(); err != nil {
		return time.Time{}, err
	}
	var t time.Time
	if err := t.UnmarshalJSON(d.b[start:d.i]); err != nil {
		return time.Time{}, errSlowPath
	}
	return t, nil
}

// raw reads an object, an array or null (the JSON of params and result)
// and returns a copy of its bytes, as json.RawMessage does.
func (d *taskDecoder) raw() (json.RawMessage, error) {
	d.ws()
	start := d.i
	if len(d.b)-start >= 4 && string(d.b[start:start+4]) == "null" {
		d.i += 4
		return json.RawMessage("null"), nil
	}
	depth := 0
	for j := start; j < len(d.b); j++ {
		switch c := d.b[j]; c {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				if !json.Valid(d.b[start : j+1]) {
					return nil, errSlowPath
				}
				d.i = j + 1
				return append(json.RawMessage(nil), d.b[start:j+1]...), nil
			}
		case '"':
			for j++; j < len(d.b) && d.b[j] != '"'; j++ {
				if d.b[j] == '\\' {
					j++
				}
			}
		default:
			if depth == 0 {
				return nil, errSlowPath
			}
		}
	}
	return nil, errSlowPath
}

func (d *taskDecoder) eat(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func decodeTaskJSON(b []byte, withLease bool, lease *uuid.UUID) (Task, error) {
	var t Task
	var timeoutS float64
	d := &taskDecoder{b: b}
	if !d.eat('{') {
		return t, errSlowPath
	}
	if d.eat('}') {
		return t, d.end()
	}
	for {
		key, err := d.str()
		if err != nil {
			return t, err
		}
		if !d.eat(':') {
			return t, errSlowPath
		}
		switch string(key) {
		case "id":
			t.ID, err = d.id()
		case "type":
			t.Type, err = d.text()
		case "params":
			t.Params, err = d.raw()
		case "owner":
			t.Owner, err = d.text()
		case "priority":
			t.Priority, err = d.integer()
		case "pool":
			t.Pool, err = d.text()
		case "depends_on":
			t.DependsOn, err = d.uuids()
		case "max_attempts":
			t.MaxAttempts, err = d.integer()
		case "max_lost":
			t.MaxLost, err = d.integer()
		case "idempotency_key":
			t.IdempotencyKey, err = d.text()
		case "state":
			var s string
			s, err = d.text()
			t.State = TaskState(s)
		case "attempt":
			t.Attempt, err = d.integer()
		case "failures":
			t.Failures, err = d.integer()
		case "lost":
			t.Lost, err = d.integer()
		case "deps_pending":
			t.DepsPending, err = d.integer()
		case "worker_id":
			var id uuid.UUID
			id, err = d.id()
			t.WorkerID = &id
		case "lease_expires_at":
			t.LeaseExpiresAt, err = d.stampPtr()
		case "result":
			t.Result, err = d.raw()
		case "error":
			t.Error, err = d.text()
		case "progress":
			var f float64
			f, err = d.float64()
			t.Progress = &f
		case "progress_message":
			t.ProgressMsg, err = d.text()
		case "created_at":
			t.CreatedAt, err = d.stamp()
		case "run_after":
			t.RunAfter, err = d.stamp()
		case "started_at":
			t.StartedAt, err = d.stampPtr()
		case "finished_at":
			t.FinishedAt, err = d.stampPtr()
		case "updated_at":
			t.UpdatedAt, err = d.stamp()
		case "timeout_s":
			timeoutS, err = d.float64()
		case "lease_token":
			if !withLease {
				return t, errSlowPath
			}
			*lease, err = d.id()
		default:
			return t, errSlowPath
		}
		if err != nil {
			return t, err
		}
		if d.eat(',') {
			continue
		}
		if d.eat('}') {
			break
		}
		return t, errSlowPath
	}
	t.Timeout = time.Duration(timeoutS * float64(time.Second))
	return t, d.end()
}

func (d *taskDecoder) end() error {
	d.ws()
	if d.i != len(d.b) {
		return errSlowPath
	}
	return nil
}

func (d *taskDecoder) text() (string, error) {
	s, err := d.str()
	return string(s), err
}

func (d *taskDecoder) stampPtr() (*time.Time, error) {
	t, err := d.stamp()
	return &t, err
}

func (d *taskDecoder) uuids() ([]uuid.UUID, error) {
	if !d.eat('[') {
		return nil, errSlowPath
	}
	out := []uuid.UUID{}
	if d.eat(']') {
		return out, nil
	}
	for {
		id, err := d.id()
		if err != nil {
			return nil, err
		}
		out = append(out, id)
		if d.eat(',') {
			continue
		}
		if d.eat(']') {
			return out, nil
		}
		return nil, errSlowPath
	}
}
