package config

import (
	"strings"
	"testing"
	"time"
)

func TestStallTimeout(t *testing.T) {
	for yaml, want := range map[string]string{
		"heartbeat_interval: 5s\ntasks:\n  types:\n    render:\n      stall_timeout: 4s\n": "tasks.types.render.stall_timeout: must be at least heartbeat_interval (5s)",
		"tasks:\n  types:\n    render:\n      stall_timeout: -1s\n":                        "tasks.types.render.stall_timeout: must be ≥ 0",
		"heartbeat_interval: 5s\ntasks:\n  types:\n    render:\n      stall_timeout: 5m\n": "",
	} {
		c, err := Load(writeFile(t, "c.yaml", yaml), noEnv)
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: unexpected error %v", yaml, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: err = %v, want a line containing %q", yaml, err, want)
		case want == "":
			if got := c.StallTimeouts(); len(got) != 1 || got["render"] != 5*time.Minute {
				t.Errorf("StallTimeouts = %v, want render: 5m", got)
			}
		}
	}
}
