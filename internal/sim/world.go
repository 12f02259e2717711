package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/config"
	"gopkg.in/yaml.v3"
)

// World is how the simulated cloud behaves (a world YAML file).
type World struct {
	// Seed seeds every random draw of the run.
	Seed uint64 `yaml:"seed"`
	// PricePerHour is the USD price of an instance-hour, billed from the
	// create call to termination.
	PricePerHour float64 `yaml:"price_per_hour"`
	// RunAfterLastArrival is how long the run continues after the last
	// task arrives (1h).
	RunAfterLastArrival config.Duration `yaml:"run_after_last_arrival"`
	// Placements maps a placement key (pool/gpu/region) or "*" (every
	// other placement) to its behaviour.
	Placements map[string]*Placement `yaml:"placements"`
	// PoisonKillAfter is how long after it starts a poison task kills its
	// worker (1s).
	PoisonKillAfter config.Duration `yaml:"poison_kill_after"`
}

// Placement is how the instances of one placement behave.
type Placement struct {
	// RunningAfter is create → the provider reports the instance running.
	RunningAfter config.Duration `yaml:"running_after"`
	// Boot is create → the agent's first heartbeat.
	Boot Dist `yaml:"boot"`
	// NeverBoot is the fraction of instances whose agent never comes up.
	NeverBoot float64 `yaml:"never_boot"`
	// CrashPerHour is agent crashes per instance-hour (the instance stays
	// up, silent).
	CrashPerHour float64 `yaml:"crash_per_hour"`
	// CapacityOutages are windows (from the start of the run) during which
	// creates fail with a capacity error.
	CapacityOutages []Window `yaml:"capacity_outages"`
	// PricePerHour overrides the world's price for this placement.
	PricePerHour *float64 `yaml:"price_per_hour"`
}

// Window is a time window measured from the start of the run.
type Window struct {
	From config.Duration `yaml:"from"`
	To   config.Duration `yaml:"to"`
}

// Dist is a distribution of durations: fixed, normal (mean, sd) or
// lognormal (median with sigma or p95). A plain duration is fixed.
type Dist struct {
	Kind   string          `yaml:"dist"`
	Value  config.Duration `yaml:"value"`
	Mean   config.Duration `yaml:"mean"`
	SD     config.Duration `yaml:"sd"`
	Median config.Duration `yaml:"median"`
	Sigma  float64         `yaml:"sigma"`
	P95    config.Duration `yaml:"p95"`
	// set records which keys were written, for the missing-parameter check.
	set map[string]bool
}

// UnmarshalYAML reads a plain duration ("330s") or a mapping with dist.
func (d *Dist) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var v config.Duration
		if err := n.Decode(&v); err != nil {
			return err
		}
		*d = Dist{Kind: "fixed", Value: v, set: map[string]bool{"dist": true, "value": true}}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a duration or a mapping like {dist: normal, mean: 330s, sd: 15s}", n.Line)
	}
	set := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(distKeys, k.Value) {
			return fmt.Errorf("line %d: unknown field %q in a distribution (want %s)", k.Line, k.Value, strings.Join(distKeys, ", "))
		}
		set[k.Value] = true
	}
	type plain Dist
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*d = Dist(p)
	d.set = set
	return nil
}

// distKeys are the fields of a distribution.
var distKeys = []string{"dist", "value", "mean", "sd", "median", "sigma", "p95"}

var (
	unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)
	wrongType    = regexp.MustCompile("cannot unmarshal !!(\\w+) `([^`]*)` into (\\S+)")
)

// yamlMessage makes yaml.v3's errors one readable line.
func yamlMessage(err error) string {
	msg := strings.TrimPrefix(oneLine(err), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:; ")
	msg = unknownField.ReplaceAllString(msg, `unknown field "$1"`)
	return wrongType.ReplaceAllString(msg, `"$2" is not a valid $3`)
}

// z95 is the standard normal's 95th percentile.
const z95 = 1.6448536269514722

// check reports a missing or contradictory parameter, naming field.
func (d *Dist) check(field string) error {
	need := func(keys ...string) error {
		var miss []string
		for _, k := range keys {
			if !d.set[k] {
				miss = append(miss, k)
			}
		}
		if len(miss) > 0 {
			return fmt.Errorf("%s: dist %s needs %s", field, d.Kind, strings.Join(miss, " and "))
		}
		return nil
	}
	switch d.Kind {
	case "":
		return fmt.Errorf("%s: missing (want e.g. {dist: normal, mean: 330s, sd: 15s} or a duration)", field)
	case "fixed":
		return need("value")
	case "normal":
		if err := need("mean", "sd"); err != nil {
			return err
		}
		if d.Mean < 0 || d.SD < 0 {
			return fmt.Errorf("%s: mean and sd must not be negative", field)
		}
	case "lognormal":
		if err := need("median"); err != nil {
			return err
		}
		if d.set["sigma"] == d.set["p95"] {
			return fmt.Errorf("%s: dist lognormal needs exactly one of sigma and p95", field)
		}
		if d.Median <= 0 {
			return fmt.Errorf("%s: median must be positive", field)
		}
		if d.set["sigma"] && (d.Sigma < 0 || d.Sigma > 5) {
			return fmt.Errorf("%s: sigma must be between 0 and 5 (got %g)", field, d.Sigma)
		}
		if d.set["p95"] && d.P95 < d.Median {
			return fmt.Errorf("%s: p95 %s is below the median %s", field, d.P95, d.Median)
		}
	default:
		return fmt.Errorf("%s: unknown dist %q (want fixed, normal or lognormal)", field, d.Kind)
	}
	return nil
}

// Sample draws one duration (never below zero).
func (d *Dist) Sample(r *rand.Rand) time.Duration {
	switch d.Kind {
	case "normal":
		return max(0, d.Mean.D()+time.Duration(r.NormFloat64()*float64(d.SD.D())))
	case "lognormal":
		sigma := d.Sigma
		if d.set["p95"] {
			sigma = math.Log(float64(d.P95.D())/float64(d.Median.D())) / z95
		}
		return time.Duration(float64(d.Median.D()) * math.Exp(sigma*r.NormFloat64()))
	}
	return d.Value.D()
}

// String describes d ("normal mean 330s sd 15s").
func (d *Dist) String() string {
	switch d.Kind {
	case "normal":
		return fmt.Sprintf("normal mean %s sd %s", d.Mean, d.SD)
	case "lognormal":
		if d.set["p95"] {
			return fmt.Sprintf("lognormal median %s p95 %s", d.Median, d.P95)
		}
		return fmt.Sprintf("lognormal median %s sigma %g", d.Median, d.Sigma)
	}
	return fmt.Sprintf("fixed %s", d.Value)
}

// ParseWorld reads a world YAML. Unknown fields, missing distribution
// parameters and out-of-range values are errors naming the field.
func ParseWorld(data []byte, name string) (*World, error) {
	w := &World{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(w); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty world", name)
		}
		return nil, fmt.Errorf("%s: %s", name, yamlMessage(err))
	}
	if err := w.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return w, nil
}

func (w *World) validate() error {
	if w.RunAfterLastArrival == 0 {
		w.RunAfterLastArrival = config.Duration(time.Hour)
	}
	if w.PoisonKillAfter == 0 {
		w.PoisonKillAfter = config.Duration(time.Second)
	}
	switch {
	case w.PricePerHour < 0 || w.PricePerHour > 1000:
		return fmt.Errorf("price_per_hour: must be between 0 and 1000 (got %g)", w.PricePerHour)
	case w.RunAfterLastArrival < 0 || w.RunAfterLastArrival.D() > 30*24*time.Hour:
		return fmt.Errorf("run_after_last_arrival: must be between 0 and 720h (got %s)", w.RunAfterLastArrival)
	case w.PoisonKillAfter < 0:
		return fmt.Errorf("poison_kill_after: must not be negative (got %s)", w.PoisonKillAfter)
	case len(w.Placements) == 0:
		return fmt.Errorf(`placements: missing (want at least "*": {running_after: 60s, boot: 330s})`)
	}
	for _, key := range slices.Sorted(maps.Keys(w.Placements)) {
		p := w.Placements[key]
		f := "placements." + key
		if p == nil {
			return fmt.Errorf("%s: empty", f)
		}
		if err := p.Boot.check(f + ".boot"); err != nil {
			return err
		}
		switch {
		case p.RunningAfter < 0:
			return fmt.Errorf("%s.running_after: must not be negative (got %s)", f, p.RunningAfter)
		case p.NeverBoot < 0 || p.NeverBoot > 1:
			return fmt.Errorf("%s.never_boot: must be a fraction between 0 and 1 (got %g)", f, p.NeverBoot)
		case p.CrashPerHour < 0 || p.CrashPerHour > 3600:
			return fmt.Errorf("%s.crash_per_hour: must be between 0 and 3600 (got %g)", f, p.CrashPerHour)
		case p.PricePerHour != nil && (*p.PricePerHour < 0 || *p.PricePerHour > 1000):
			return fmt.Errorf("%s.price_per_hour: must be between 0 and 1000 (got %g)", f, *p.PricePerHour)
		}
		for i, o := range p.CapacityOutages {
			if o.From < 0 || o.To <= o.From {
				return fmt.Errorf("%s.capacity_outages[%d]: want 0 ≤ from < to (got from %s to %s)", f, i, o.From, o.To)
			}
		}
	}
	return nil
}

// oneLine joins a multi-line error into one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
