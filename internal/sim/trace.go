package sim

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// TraceTask is one line of a trace: a task that arrives arrival after the
// start of the run and runs for duration.
type TraceTask struct {
	// Line is the task's line in the trace file (1 is the header).
	Line     int
	Arrival  time.Duration
	Owner    string
	Duration time.Duration
	// Poison marks a task that kills its worker (world.poison_kill_after
	// after it starts) every time it runs.
	Poison   bool
	Type     string
	Pool     string
	Priority int
}

// Trace columns. The first four are required, in any order; the others are
// optional.
var (
	requiredColumns = []string{"arrival_s", "owner", "duration_s", "poison"}
	optionalColumns = []string{"type", "pool", "priority"}
)

// maxTraceSeconds bounds arrival_s and duration_s (one year).
const maxTraceSeconds = 365 * 24 * 3600

// ParseTrace reads a trace CSV: a header naming the columns
// (arrival_s,owner,duration_s,poison and optionally type,pool,priority),
// then one task per line, sorted by arrival. Errors name the file, the line
// and the column.
func ParseTrace(r io.Reader, name string) ([]TraceTask, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var (
		cols  map[string]int
		ncols int
		out   []TraceTask
		line  int
	)
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Split(text, ",")
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		if cols == nil {
			var err error
			if cols, err = traceHeader(fields); err != nil {
				return nil, fmt.Errorf("%s line %d: %w", name, line, err)
			}
			ncols = len(fields)
			continue
		}
		if len(fields) != ncols {
			return nil, fmt.Errorf("%s line %d: %d columns, the header has %d", name, line, len(fields), ncols)
		}
		t, err := traceRow(fields, cols)
		if err != nil {
			return nil, fmt.Errorf("%s line %d, %w", name, line, err)
		}
		t.Line = line
		if n := len(out); n > 0 && t.Arrival < out[n-1].Arrival {
			return nil, fmt.Errorf("%s line %d, column arrival_s: %s is before the previous task's %s (arrivals must be sorted)",
				name, line, fields[cols["arrival_s"]], seconds(out[n-1].Arrival))
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if cols == nil {
		return nil, fmt.Errorf("%s: empty trace (want a header line %s)", name, strings.Join(requiredColumns, ","))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: the trace has a header but no tasks", name)
	}
	return out, nil
}

func traceHeader(fields []string) (map[string]int, error) {
	cols := map[string]int{}
	for i, f := range fields {
		known := false
		for _, c := range append(requiredColumns[:len(requiredColumns):len(requiredColumns)], optionalColumns...) {
			known = known || c == f
		}
		if !known {
			return nil, fmt.Errorf("column %d: unknown column %q (want %s, optionally %s)", i+1, f,
				strings.Join(requiredColumns, ","), strings.Join(optionalColumns, ","))
		}
		if _, dup := cols[f]; dup {
			return nil, fmt.Errorf("column %d: %q appears twice", i+1, f)
		}
		cols[f] = i
	}
	for _, c := range requiredColumns {
		if _, ok := cols[c]; !ok {
			return nil, fmt.Errorf("the header lacks column %q (want %s)", c, strings.Join(requiredColumns, ","))
		}
	}
	return cols, nil
}

func traceRow(fields []string, cols map[string]int) (TraceTask, error) {
	var t TraceTask
	secs := func(col string) (time.Duration, error) {
		v := fields[cols[col]]
		f, err := strconv.ParseFloat(v, 64)
		switch {
		case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
			return 0, fmt.Errorf("column %s: %q is not a number of seconds", col, v)
		case f < 0:
			return 0, fmt.Errorf("column %s: %s is negative", col, v)
		case f > maxTraceSeconds:
			return 0, fmt.Errorf("column %s: %s is over the limit of %d s (one year)", col, v, maxTraceSeconds)
		}
		return time.Duration(math.Round(f*1e3)) * time.Millisecond, nil
	}
	var err error
	if t.Arrival, err = secs("arrival_s"); err != nil {
		return t, err
	}
	if t.Duration, err = secs("duration_s"); err != nil {
		return t, err
	}
	if t.Owner = fields[cols["owner"]]; t.Owner == "" {
		return t, fmt.Errorf("column owner: empty")
	}
	switch v := fields[cols["poison"]]; v {
	case "0", "":
	case "1":
		t.Poison = true
	default:
		return t, fmt.Errorf("column poison: %q is not 0 or 1", v)
	}
	if i, ok := cols["type"]; ok {
		t.Type = fields[i]
	}
	if i, ok := cols["pool"]; ok {
		t.Pool = fields[i]
	}
	if i, ok := cols["priority"]; ok && fields[i] != "" {
		p, err := strconv.Atoi(fields[i])
		if err != nil {
			return t, fmt.Errorf("column priority: %q is not an integer", fields[i])
		}
		t.Priority = p
	}
	return t, nil
}

// seconds formats d as seconds with millisecond precision ("17.315").
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// WriteTrace writes tasks as a trace CSV (with the optional columns when
// any task uses them).
func WriteTrace(w io.Writer, tasks []TraceTask) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "arrival_s,owner,duration_s,poison,type,pool,priority")
	for _, t := range tasks {
		p := 0
		if t.Poison {
			p = 1
		}
		fmt.Fprintf(bw, "%s,%s,%s,%d,%s,%s,%d\n", seconds(t.Arrival), t.Owner, seconds(t.Duration), p, t.Type, t.Pool, t.Priority)
	}
	return bw.Flush()
}

// CheckTrace reports the first task whose pool (its pool column, else its
// type's pool in tasks.type_pools, else "default") is not a pool of cfg.
func CheckTrace(trace []TraceTask, pools map[string]bool, typePools map[string]string, name string) error {
	for _, t := range trace {
		pool := t.Pool
		if pool == "" {
			pool = typePools[t.Type]
		}
		if pool == "" {
			pool = "default"
		}
		if !pools[pool] {
			return fmt.Errorf("%s line %d, column pool: pool %q is not in the config", name, t.Line, pool)
		}
	}
	return nil
}
