package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

const simExamples = "../../examples/sim/"

// TestSimulateBadInput: every bad input is one line naming what is wrong,
// exit status 2, and nothing runs (no timeline file, no report).
func TestSimulateBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := simulateFlags{trace: simExamples + "poison.csv", world: simExamples + "poison.world.yaml", config: simExamples + "drover.yaml"}
	tests := []struct {
		name string
		edit func(f *simulateFlags)
		want string
	}{
		{"malformed csv line", func(f *simulateFlags) {
			f.trace = write("a.csv", "arrival_s,owner,duration_s,poison\n1,u1,5,0\n2,u1,abc,0\n")
		}, `a.csv line 3, column duration_s: "abc" is not a number of seconds`},
		{"missing column", func(f *simulateFlags) {
			f.trace = write("b.csv", "arrival_s,owner,duration_s,poison\n1,u1,5\n")
		}, "b.csv line 2: 3 columns, the header has 4"},
		{"negative duration", func(f *simulateFlags) {
			f.trace = write("c.csv", "arrival_s,owner,duration_s,poison\n1,u1,-5,0\n")
		}, "c.csv line 2, column duration_s: -5 is negative"},
		{"unsorted arrivals", func(f *simulateFlags) {
			f.trace = write("d.csv", "arrival_s,owner,duration_s,poison\n5,u1,5,0\n2,u1,5,0\n")
		}, "d.csv line 3, column arrival_s: 2 is before the previous task's 5.000 (arrivals must be sorted)"},
		{"pool not in the config", func(f *simulateFlags) {
			f.trace = write("p.csv", "arrival_s,owner,duration_s,poison,pool\n1,u1,5,0,gpu\n")
		}, `p.csv line 2, column pool: pool "gpu" is not in the config`},
		{"unknown world field", func(f *simulateFlags) {
			f.world = write("e.yaml", "seed: 1\nboot_time: 3s\nplacements:\n  \"*\": {boot: 3s}\n")
		}, `e.yaml: line 2: unknown field "boot_time"`},
		{"distribution missing a parameter", func(f *simulateFlags) {
			f.world = write("f.yaml", "seed: 1\nplacements:\n  \"*\": {boot: {dist: normal, mean: 330s}}\n")
		}, "f.yaml: placements.*.boot: dist normal needs sd"},
		{"lognormal without sigma or p95", func(f *simulateFlags) {
			f.world = write("g.yaml", "seed: 1\nplacements:\n  \"*\": {boot: {dist: lognormal, median: 2m}}\n")
		}, "placements.*.boot: dist lognormal needs exactly one of sigma and p95"},
		{"set key that does not exist", func(f *simulateFlags) {
			f.sets = []string{"pools.default.idle_timout=2m"}
		}, `--set pools.default.idle_timout=2m: unknown key "idle_timout"`},
		{"set pool that does not exist", func(f *simulateFlags) {
			f.sets = []string{"pools.gpu.max=3"}
		}, `--set pools.gpu.max=3: pool "gpu" is not in the config`},
		{"set value of the wrong type", func(f *simulateFlags) {
			f.sets = []string{"pools.default.max=lots"}
		}, `--set pools.default.max=lots: "lots" is not a valid int`},
		{"set duration of the wrong type", func(f *simulateFlags) {
			f.sets = []string{"pools.default.boot_timeout=soon"}
		}, `--set pools.default.boot_timeout=soon: "soon" is not a duration`},
		{"set without a value", func(f *simulateFlags) {
			f.sets = []string{"tick"}
		}, `--set "tick": want key=value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := good
			tt.edit(&f)
			f.timeline = filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".timeline.csv")
			var stdout, stderr bytes.Buffer
			cmd := &cobra.Command{}
			cmd.SetContext(t.Context())
			err := runSimulate(cmd, f, &stdout, &stderr)
			if err == nil {
				t.Fatal("no error")
			}
			var bi badInput
			if !errors.As(err, &bi) || bi.ExitCode() != 2 {
				t.Errorf("error %q is not bad input (exit status 2)", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("error = %q, want one line containing %q", msg, tt.want)
			}
			if stdout.Len() > 0 || stderr.Len() > 0 {
				t.Errorf("output although nothing should run: %q %q", stdout.String(), stderr.String())
			}
			if _, err := os.Stat(f.timeline); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("timeline file written (stat: %v): the run started", err)
			}
		})
	}
}

// TestSimulateCLI runs the hand-sized scenario through the command: the
// text report, --vs with itself and --json.
func TestSimulateCLI(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "t.csv")
	if err := os.WriteFile(trace, []byte("arrival_s,owner,duration_s,poison\n0,u1,100,0\n10,u2,50,0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := simulateFlags{trace: trace, world: simExamples + "poison.world.yaml", config: simExamples + "drover.yaml",
		timeline: filepath.Join(dir, "tl.csv")}
	run := func(f simulateFlags) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := &cobra.Command{}
		cmd.SetContext(t.Context())
		if err := runSimulate(cmd, f, &stdout, &stderr); err != nil {
			t.Fatalf("simulate: %v", err)
		}
		if !strings.Contains(stderr.String(), "steps/s") {
			t.Errorf("stderr = %q, want the speed line", stderr.String())
		}
		return stdout.String()
	}
	out := run(f)
	for _, want := range []string{"GPU-hours billed", "billed ÷ lower bound", "succeeded", "wait p95", "trips"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	tl, err := os.ReadFile(f.timeline)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(tl), "\n"); lines < 10 || !strings.HasPrefix(string(tl), "t_s,queued,claimable,running,") {
		t.Errorf("timeline has %d lines:\n%s", lines, tl)
	}
	f.timeline, f.vs = "", f.config
	if vs := run(f); !strings.Contains(vs, "B ÷ A") || strings.Contains(vs, "n/a") {
		t.Errorf("--vs self:\n%s", vs)
	}
	f.vs, f.json = "", true
	if js := run(f); !strings.Contains(js, `"gpu_hours"`) {
		t.Errorf("--json:\n%s", js)
	}
}
