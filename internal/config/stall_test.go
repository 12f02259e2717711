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

func TestLimits(t *testing.T) {
	c, err := Load(writeFile(t, "c.yaml", "limits:\n  api_rate: -1\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "limits.api_rate: must be ≥ 0") {
		t.Fatalf("negative api_rate: %v", err)
	}
	c, err = Load(writeFile(t, "c.yaml", "limits:\n  worker_rate: 50\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	l := c.EffectiveLimits()
	if l.WorkerRate != 50 || l.WorkerBurst != DefaultWorkerBurst || l.APIRate != DefaultAPIRate || l.APIBurst != DefaultAPIBurst {
		t.Fatalf("effective limits %+v", l)
	}
}
