package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recordedFields is the query used for the captures in testdata/ (see
// testdata/README.md).
var recordedFields = strings.Split("index,uuid,name,pci.bus_id,driver_version,memory.total,memory.used,memory.free,utilization.gpu,utilization.memory,temperature.gpu,power.draw,power.limit,clocks.sm,clocks.max.sm,ecc.errors.uncorrected.volatile.total,pstate,fan.speed", ",")

// sections splits a capture file into "### title" sections (without the
// trailing "exit=N" line).
func sections(t *testing.T, name string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var title string
	var body []string
	flush := func() {
		if title != "" {
			out[title] = strings.Join(body, "\n")
		}
	}
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "### "):
			flush()
			title, body = strings.TrimPrefix(l, "### "), nil
		case strings.HasPrefix(l, "exit="):
		default:
			body = append(body, l)
		}
	}
	flush()
	return out
}

func TestParseNvidiaSMIRecorded(t *testing.T) {
	idle := sections(t, "nvidia-smi-idle.txt")
	load := sections(t, "nvidia-smi-load.txt")
	cases := []struct {
		name             string
		out              string
		used, util, temp int
		power            float64
	}{
		{"idle nounits", idle["query idle (csv,noheader,nounits)"], 0, 0, 32, 75.71},
		{"idle header+units", idle["query idle (csv with header and units)"], 0, 0, 32, 72.69},
		{"load 1", load["query under load, sample 1"], 20213, 99, 48, 299.58},
		{"load 4 power above limit", load["query under load, sample 4"], 20213, 99, 56, 700.53},
		{"load 5", load["query under load, sample 5"], 20213, 99, 57, 695.99},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if strings.TrimSpace(c.out) == "" {
				t.Fatal("section missing from capture")
			}
			gpus, err := ParseNvidiaSMI(recordedFields, []byte(c.out))
			if err != nil {
				t.Fatal(err)
			}
			if len(gpus) != 1 {
				t.Fatalf("got %d gpus, want 1", len(gpus))
			}
			g := gpus[0]
			if g.Index != 0 || g.Name != "NVIDIA H100 80GB HBM3" || g.UUID != "GPU-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d" || g.MemoryMiB != 81559 {
				t.Fatalf("identity: %+v", g)
			}
			if g.MemUsedMiB == nil || *g.MemUsedMiB != c.used {
				t.Errorf("memory used = %v, want %d", g.MemUsedMiB, c.used)
			}
			if g.UtilPercent == nil || *g.UtilPercent != c.util {
				t.Errorf("util = %v, want %d", g.UtilPercent, c.util)
			}
			if g.TempC == nil || *g.TempC != c.temp {
				t.Errorf("temp = %v, want %d", g.TempC, c.temp)
			}
			if g.PowerW == nil || *g.PowerW != c.power {
				t.Errorf("power = %v, want %v", g.PowerW, c.power)
			}
		})
	}
}

func TestParseNvidiaSMIEdgeCases(t *testing.T) {
	fields := NvidiaSMIFields
	cases := []struct {
		name    string
		out     string
		n       int
		wantErr string
	}{
		{"empty", "", 0, ""},
		{"blank lines", "\n\n  \n", 0, ""},
		{"not supported and N/A", "0, Tesla T4, GPU-x, 15360, [N/A], [Not Supported], 40, [N/A]\n", 1, ""},
		{"two gpus, padded", "  0 ,  A100 , GPU-a , 40960 , 1 , 2 , 30 , 50.5 \n1, A100, GPU-b, 40960, 3, 4, 31, 51\n", 2, ""},
		{"wrong column count", "0, A100, GPU-a\n", 0, "3 values, want 8"},
		{"bad number", "0, A100, GPU-a, lots, 1, 2, 3, 4\n", 0, "memory.total"},
		{"bad index", "x, A100, GPU-a, 1, 1, 2, 3, 4\n", 0, "index"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			gpus, err := ParseNvidiaSMI(fields, []byte(c.out))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(gpus) != c.n {
				t.Fatalf("got %d gpus, want %d", len(gpus), c.n)
			}
		})
	}
	gpus, _ := ParseNvidiaSMI(fields, []byte("0, Tesla T4, GPU-x, 15360, [N/A], [Not Supported], 40, [N/A]\n"))
	if g := gpus[0]; g.MemUsedMiB != nil || g.UtilPercent != nil || g.PowerW != nil || g.TempC == nil || *g.TempC != 40 {
		t.Fatalf("unknown values not nil: %+v", g)
	}
	if _, err := ParseNvidiaSMI([]string{"uuid"}, nil); err == nil {
		t.Fatal("query without index accepted")
	}
}

// fakeSMI writes an executable nvidia-smi script into a new directory.
func fakeSMI(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "nvidia-smi")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNvidiaSMIProbe(t *testing.T) {
	ctx := context.Background()
	t.Run("absent binary means no gpus", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		gpus, err := NvidiaSMI{}.Probe(ctx)
		if err != nil || len(gpus) != 0 {
			t.Fatalf("gpus=%v err=%v", gpus, err)
		}
	})
	t.Run("invalid field is an error", func(t *testing.T) {
		p := fakeSMI(t, "echo 'Field \"bogus.field\" is not a valid field to query.'\necho\nexit 2\n")
		_, err := NvidiaSMI{Path: p}.Probe(ctx)
		if err == nil || !strings.Contains(err.Error(), "not a valid field") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no devices", func(t *testing.T) {
		p := fakeSMI(t, "echo 'No devices were found'\nexit 6\n")
		gpus, err := NvidiaSMI{Path: p}.Probe(ctx)
		if err != nil || len(gpus) != 0 {
			t.Fatalf("gpus=%v err=%v", gpus, err)
		}
	})
	t.Run("real output", func(t *testing.T) {
		p := fakeSMI(t, "case \"$1\" in --query-gpu=index,name,uuid,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw) ;; *) echo bad query; exit 2;; esac\n"+
			"echo '0, NVIDIA H100 80GB HBM3, GPU-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d, 81559, 20213, 99, 48, 299.58'\n")
		gpus, err := NvidiaSMI{Path: p}.Probe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(gpus) != 1 || gpus[0].MemoryMiB != 81559 || *gpus[0].UtilPercent != 99 {
			t.Fatalf("gpus = %+v", gpus)
		}
	})
}
