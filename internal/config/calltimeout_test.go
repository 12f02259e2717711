package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCallTimeout(t *testing.T) {
	for yaml, want := range map[string]string{
		"providers:\n  local:\n    call_timeout: 0s\n":            "providers.local.call_timeout: must be positive, got 0s",
		"providers:\n  runpod:\n    call_timeout: -1s\n":          "providers.runpod.call_timeout: must be positive, got -1s",
		"tick: 1s\nproviders:\n  local:\n    call_timeout: 11s\n": "providers.local.call_timeout: must be at most tick × 10 = 10s, got 11s",
		"cluster: a_b\n": "cluster: must be a DNS label",
		"tick: 1s\nproviders:\n  local:\n    call_timeout: 10s\n": "",
		"providers:\n  local:\n    call_timeout: 500ms\n":         "",
	} {
		_, err := Load(writeFile(t, "c.yaml", yaml), noEnv)
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: unexpected error %v", yaml, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: err = %v, want a line containing %q", yaml, err, want)
		}
	}
	c := Default()
	if got, want := c.CallTimeout("local"), min(DefaultCallTimeout, 10*DefaultTick); got != want {
		t.Errorf("default call timeout = %s, want %s", got, want)
	}
	c.Tick = Duration(200 * time.Millisecond)
	if got := c.CallTimeout("sim"); got != 2*time.Second {
		t.Errorf("call timeout with a 200ms tick = %s, want tick × 10 = 2s", got)
	}
	d := Duration(3 * time.Second)
	c.Providers.RunPod.CallTimeout = &d
	if got := c.CallTimeout("runpod"); got != 3*time.Second {
		t.Errorf("configured runpod call timeout = %s, want 3s", got)
	}
}

// Every replica of one PostgreSQL deployment on a host gets the same
// default local.dir, whatever its working directory; another deployment
// gets another one.
func TestLocalDirDefaultIsHostWide(t *testing.T) {
	a := &Config{Database: "postgres://drover:pw1@db/drover"}
	b := &Config{Database: "postgres://drover:pw2@db/drover"}
	other := &Config{Database: "postgres://drover@db/other"}
	if a.EffectiveLocalDir() != b.EffectiveLocalDir() {
		t.Errorf("replicas disagree: %s vs %s", a.EffectiveLocalDir(), b.EffectiveLocalDir())
	}
	if !filepath.IsAbs(a.EffectiveLocalDir()) || strings.Contains(a.EffectiveLocalDir(), "pw1") {
		t.Errorf("default dir %q is not absolute or shows the password", a.EffectiveLocalDir())
	}
	if a.EffectiveLocalDir() == other.EffectiveLocalDir() {
		t.Errorf("two deployments share %s", a.EffectiveLocalDir())
	}
}
