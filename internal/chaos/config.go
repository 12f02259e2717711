package chaos

import (
	"fmt"
	"io"
	"time"
)

// Config is one chaos run.
type Config struct {
	// Tasks is the number of tasks submitted (default 10,000).
	Tasks int
	// Agents is the pool's max (default 12).
	Agents int
	// Replicas is the number of `drover serve` processes (default 3).
	Replicas int
	// Seed drives every random choice (tasks, which agent dies, when).
	Seed int64
	// Duration caps the whole run; tasks not finished by then count as
	// unfinished (default 30 min).
	Duration time.Duration
	// DB is the PostgreSQL URL; empty: a private cluster the harness
	// starts (and restarts) itself. With DB, PGRestart is the shell
	// command that restarts that server (empty: no restart fault).
	DB        string
	PGRestart string
	// Binary is the drover binary the replicas and agents run (required).
	Binary string
	// HandlerMin and HandlerMax bound a task's handler time (0.2–2 s).
	HandlerMin, HandlerMax time.Duration
	// FailFraction of the tasks fail their first attempt (default 0.05).
	FailFraction float64
	// ChainFraction of the tasks depend on the task before (default 0.2).
	ChainFraction float64
	// AgentKillEvery is the mean time between agent SIGKILLs during the
	// chaos phase (default 4 s; each gap is 0.5–1.5 times it).
	AgentKillEvery time.Duration
	// LeaderKills, Pauses and PGRestarts are how many times each fault is
	// injected (defaults 3, 1, 1).
	LeaderKills, Pauses, PGRestarts int
	// CalmFraction of the tasks run before any fault, to measure the calm
	// throughput with the same settings (default 0.1).
	CalmFraction float64
	// LeaderTTL and Tick override drover's defaults when set.
	LeaderTTL, Tick time.Duration
	// Dir holds configs, logs and markers (default: a temporary
	// directory, removed after a run whose invariants hold).
	Dir string
	// Progress receives one line per phase and fault (nil: discarded).
	Progress io.Writer
}

// Defaults fills the zero fields of c with the defaults.
func (c *Config) Defaults() {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.Tasks, 10000)
	def(&c.Agents, 12)
	def(&c.Replicas, 3)
	if c.Duration == 0 {
		c.Duration = 30 * time.Minute
	}
	if c.HandlerMin == 0 {
		c.HandlerMin = 200 * time.Millisecond
	}
	if c.HandlerMax == 0 {
		c.HandlerMax = 2 * time.Second
	}
	if c.FailFraction == 0 {
		c.FailFraction = 0.05
	}
	if c.ChainFraction == 0 {
		c.ChainFraction = 0.2
	}
	if c.AgentKillEvery == 0 {
		c.AgentKillEvery = 4 * time.Second
	}
	if c.CalmFraction == 0 {
		c.CalmFraction = 0.1
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// DefaultFaults sets the fault counts of the full run (3 leader kills, 1
// pause, 1 PostgreSQL restart).
func (c *Config) DefaultFaults() {
	c.LeaderKills, c.Pauses, c.PGRestarts = 3, 1, 1
}

// Validate checks the (defaulted) configuration: one error naming the
// field and its limit.
func (c *Config) Validate() error {
	switch {
	case c.Tasks < 1 || c.Tasks > 1_000_000:
		return fmt.Errorf("tasks: must be between 1 and 1000000 (got %d)", c.Tasks)
	case c.Agents < 1 || c.Agents > 64:
		return fmt.Errorf("agents: must be between 1 and 64 (got %d)", c.Agents)
	case c.Replicas < 2 || c.Replicas > 9:
		return fmt.Errorf("replicas: must be between 2 and 9 (got %d)", c.Replicas)
	case c.Duration < time.Minute:
		return fmt.Errorf("duration: must be at least 1m (got %s)", c.Duration)
	case c.HandlerMin <= 0 || c.HandlerMax < c.HandlerMin || c.HandlerMax > time.Minute:
		return fmt.Errorf("handler time: need 0 < min ≤ max ≤ 1m (got %s–%s)", c.HandlerMin, c.HandlerMax)
	case c.FailFraction < 0 || c.FailFraction > 0.5:
		return fmt.Errorf("fail fraction: must be between 0 and 0.5 (got %g)", c.FailFraction)
	case c.ChainFraction < 0 || c.ChainFraction > 0.9:
		return fmt.Errorf("chain fraction: must be between 0 and 0.9 (got %g)", c.ChainFraction)
	case c.CalmFraction <= 0 || c.CalmFraction > 0.5:
		return fmt.Errorf("calm fraction: must be in (0, 0.5] (got %g)", c.CalmFraction)
	case c.AgentKillEvery < 500*time.Millisecond:
		return fmt.Errorf("agent kill interval: must be at least 500ms (got %s)", c.AgentKillEvery)
	case c.LeaderKills < 0 || c.Pauses < 0 || c.PGRestarts < 0:
		return fmt.Errorf("fault counts: must be ≥ 0 (got %d leader kills, %d pauses, %d PostgreSQL restarts)", c.LeaderKills, c.Pauses, c.PGRestarts)
	case c.Binary == "":
		return fmt.Errorf("binary: the drover binary to run is required")
	}
	return nil
}
