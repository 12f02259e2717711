package core

import (
	"encoding/json"
	"time"
)

// TaskJSON is Task's JSON form. Durations follow the API's one JSON
// convention (docs/api.md): a number of seconds under a key ending in
// "_s". The shadowing Timeout field hides Task's own from encoding/json.
// Types that embed a Task and add fields encode a struct embedding
// TaskJSON (see wire.ClaimedTask).
type TaskJSON struct {
	PlainTask
	Timeout  *json.RawMessage `json:"timeout,omitempty"`
	TimeoutS float64          `json:"timeout_s"`
}

// PlainTask is Task without its JSON methods.
type PlainTask Task

// JSON returns t in its JSON form.
func (t *Task) JSON() TaskJSON {
	return TaskJSON{PlainTask: PlainTask(*t), TimeoutS: t.Timeout.Seconds()}
}

// MarshalJSON writes the task with its timeout as timeout_s (seconds).
func (t Task) MarshalJSON() ([]byte, error) {
	return t.AppendJSON(make([]byte, 0, 512))
}

// UnmarshalJSON reads what MarshalJSON writes. A "timeout" number (the
// nanoseconds older servers wrote) is still read.
func (t *Task) UnmarshalJSON(b []byte) error {
	return DecodeTaskJSON(b, t, nil)
}

// Task returns the task that in, decoded from JSON, describes.
func (in *TaskJSON) Task() Task {
	t := Task(in.PlainTask)
	t.Timeout = time.Duration(in.TimeoutS * float64(time.Second))
	if in.Timeout != nil && in.TimeoutS == 0 {
		var ns int64
		if err := json.Unmarshal(*in.Timeout, &ns); err == nil {
			t.Timeout = time.Duration(ns)
		}
	}
	return t
}
