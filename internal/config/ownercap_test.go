package config

import (
	"strings"
	"testing"
)

func TestMaxQueuedPerOwner(t *testing.T) {
	for yaml, want := range map[string]string{
		"tasks:\n  max_queued_per_owner: -1\n":        "tasks.max_queued_per_owner: must be between 0 (no cap) and 100000000 (got -1)",
		"tasks:\n  max_queued_per_owner: 200000000\n": "tasks.max_queued_per_owner: must be between 0 (no cap) and 100000000 (got 200000000)",
		"tasks:\n  max_queued_per_owner: 5000\n":      "",
		"tasks:\n  owner_limit: 5\n":                  "",
	} {
		c, err := Load(writeFile(t, "c.yaml", yaml), noEnv)
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: unexpected error %v", yaml, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: err = %v, want a line containing %q", yaml, err, want)
		case want == "" && strings.Contains(yaml, "5000") && c.Tasks.MaxQueuedPerOwner != 5000:
			t.Errorf("max_queued_per_owner = %d, want 5000", c.Tasks.MaxQueuedPerOwner)
		case want == "" && !strings.Contains(yaml, "5000") && c.Tasks.MaxQueuedPerOwner != 0:
			t.Errorf("default max_queued_per_owner = %d, want 0 (no cap)", c.Tasks.MaxQueuedPerOwner)
		}
	}
}
