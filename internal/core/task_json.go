package core

import (
	"encoding/json"
	"time"
)

// taskJSON is Task's JSON form. Durations follow the API's one JSON
// convention (docs/api.md): a number of seconds under a key ending in
// "_s". The shadowing Timeout field hides Task's own from encoding/json.
type taskJSON struct {
	plainTask
	Timeout  *json.RawMessage `json:"timeout,omitempty"`
	TimeoutS float64          `json:"timeout_s"`
}

type plainTask Task

// MarshalJSON writes the task with its timeout as timeout_s (seconds).
func (t Task) MarshalJSON() ([]byte, error) {
	return json.Marshal(taskJSON{plainTask: plainTask(t), TimeoutS: t.Timeout.Seconds()})
}

// UnmarshalJSON reads what MarshalJSON writes. A "timeout" number (the
// nanoseconds older servers wrote) is still read.
func (t *Task) UnmarshalJSON(b []byte) error {
	var in taskJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*t = Task(in.plainTask)
	t.Timeout = time.Duration(in.TimeoutS * float64(time.Second))
	if in.Timeout != nil && in.TimeoutS == 0 {
		var ns int64
		if err := json.Unmarshal(*in.Timeout, &ns); err == nil {
			t.Timeout = time.Duration(ns)
		}
	}
	return nil
}
