package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/droverhq/drover/internal/core"
)

// GPUProbe reports the GPUs of this machine. An empty list with a nil error
// means the machine has no GPUs.
type GPUProbe interface {
	Probe(ctx context.Context) ([]core.GPU, error)
}

// NoGPUs is a GPUProbe for machines without GPUs (and for tests).
type NoGPUs struct{}

// Probe returns no GPUs.
func (NoGPUs) Probe(context.Context) ([]core.GPU, error) { return nil, nil }

// StaticGPUs is a GPUProbe that always reports the same GPUs.
type StaticGPUs []core.GPU

// Probe returns the fixed list.
func (s StaticGPUs) Probe(context.Context) ([]core.GPU, error) {
	return append([]core.GPU(nil), s...), nil
}

// NvidiaSMIFields are the --query-gpu fields the probe asks for, in order.
var NvidiaSMIFields = []string{
	"index", "name", "uuid", "memory.total", "memory.used",
	"utilization.gpu", "temperature.gpu", "power.draw",
}

// NvidiaSMI probes GPUs by running nvidia-smi. A missing nvidia-smi binary
// means no GPUs; any other failure (driver not loaded, invalid field) is an
// error.
type NvidiaSMI struct {
	// Path is the nvidia-smi executable; "" looks it up on PATH.
	Path string
}

// Probe runs nvidia-smi --query-gpu and parses its CSV output.
func (n NvidiaSMI) Probe(ctx context.Context) ([]core.GPU, error) {
	path := n.Path
	if path == "" {
		path = "nvidia-smi"
	}
	cmd := exec.CommandContext(ctx, path,
		"--query-gpu="+strings.Join(NvidiaSMIFields, ","),
		"--format=csv,noheader,nounits")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if errors.Is(err, exec.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		msg := strings.TrimSpace(stdout.String() + " " + stderr.String())
		// A driver that sees no device says so on stdout with a non-zero
		// exit; that is "no GPUs", not a probe failure.
		if strings.Contains(msg, "No devices were found") {
			return nil, nil
		}
		if len(msg) > 512 {
			msg = msg[:512]
		}
		return nil, fmt.Errorf("probe gpus: nvidia-smi: %w: %s", err, msg)
	}
	return ParseNvidiaSMI(NvidiaSMIFields, stdout.Bytes())
}

// ParseNvidiaSMI parses `nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits]`
// output. fields lists the queried fields in order; a header line, when
// present, is recognised and skipped. Values may carry units ("81559 MiB",
// "72.69 W", "0 %"); "[N/A]", "[Not Supported]" and similar read as unknown.
// index, name and memory.total are required in fields; other fields are
// optional and fill the matching core.GPU field when known.
func ParseNvidiaSMI(fields []string, out []byte) ([]core.GPU, error) {
	col := map[string]int{}
	for i, f := range fields {
		col[strings.TrimSpace(f)] = i
	}
	for _, need := range []string{"index", "name", "memory.total"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("parse nvidia-smi: field %q is required in the query", need)
		}
	}
	var gpus []core.GPU
	for n, raw := range strings.Split(string(out), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		vals := strings.Split(line, ",")
		for i := range vals {
			vals[i] = strings.TrimSpace(vals[i])
		}
		if len(vals) > 0 && vals[0] == "index" {
			continue // header line
		}
		if len(vals) != len(fields) {
			return nil, fmt.Errorf("parse nvidia-smi: line %d: %d values, want %d: %q", n+1, len(vals), len(fields), truncate(line, 200))
		}
		get := func(f string) (string, bool) {
			i, ok := col[f]
			if !ok {
				return "", false
			}
			v := stripUnit(vals[i])
			if unknownValue(v) {
				return "", false
			}
			return v, true
		}
		var g core.GPU
		idx, ok := get("index")
		if !ok {
			return nil, fmt.Errorf("parse nvidia-smi: line %d: index is unknown", n+1)
		}
		i, err := strconv.Atoi(idx)
		if err != nil {
			return nil, fmt.Errorf("parse nvidia-smi: line %d: index %q: %w", n+1, idx, err)
		}
		g.Index = i
		g.Name, _ = get("name")
		g.UUID, _ = get("uuid")
		if v, ok := get("memory.total"); ok {
			m, err := parseNumber(v)
			if err != nil {
				return nil, fmt.Errorf("parse nvidia-smi: line %d: memory.total %q: %w", n+1, v, err)
			}
			g.MemoryMiB = int(m)
		}
		for _, f := range []struct {
			name string
			dst  **int
		}{{"memory.used", &g.MemUsedMiB}, {"utilization.gpu", &g.UtilPercent}, {"temperature.gpu", &g.TempC}} {
			v, ok := get(f.name)
			if !ok {
				continue
			}
			x, err := parseNumber(v)
			if err != nil {
				return nil, fmt.Errorf("parse nvidia-smi: line %d: %s %q: %w", n+1, f.name, v, err)
			}
			iv := int(x)
			*f.dst = &iv
		}
		if v, ok := get("power.draw"); ok {
			x, err := parseNumber(v)
			if err != nil {
				return nil, fmt.Errorf("parse nvidia-smi: line %d: power.draw %q: %w", n+1, v, err)
			}
			g.PowerW = &x
		}
		gpus = append(gpus, g)
	}
	return gpus, nil
}

// stripUnit removes a trailing unit such as " MiB", " W", " %" or " MHz".
func stripUnit(v string) string {
	for _, u := range []string{" MiB", " GiB", " W", " %", " MHz", " C"} {
		if strings.HasSuffix(v, u) {
			return strings.TrimSpace(strings.TrimSuffix(v, u))
		}
	}
	return v
}

func unknownValue(v string) bool {
	if v == "" {
		return true
	}
	if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
		return true // [N/A], [Not Supported], [Unknown Error], [Insufficient Permissions]
	}
	return v == "N/A"
}

func parseNumber(v string) (float64, error) {
	return strconv.ParseFloat(v, 64)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
