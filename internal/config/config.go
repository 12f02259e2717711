// Package config defines drover.yaml: every field with its default, loading
// from YAML plus DROVER_… environment overrides, and validation that reports
// one clear line per problem.
package config

import (
	"time"

	"github.com/droverhq/drover/internal/provider"
)

// Config is the whole drover.yaml. See docs/configuration.md.
type Config struct {
	// Listen is the HTTP address of the API, dashboard and metrics.
	Listen string `yaml:"listen"`
	// Database is sqlite://PATH or postgres://… (secrets may come from env).
	Database string `yaml:"database"`
	// PublicURL is the URL workers use to reach the server (default
	// http://<listen>).
	PublicURL string `yaml:"public_url"`
	// Tick is the control-loop period.
	Tick Duration `yaml:"tick"`
	// HeartbeatInterval is how often agents beat.
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	// HeartbeatTimeout fails a ready worker whose heartbeat is older, and is
	// the lease duration of its tasks.
	HeartbeatTimeout Duration `yaml:"heartbeat_timeout"`
	// ServerLostTimeout is the agents' dead man's switch: an agent that got
	// no answer from the server for this long kills its handlers and exits
	// non-zero. 0 means ServerLostFactor × HeartbeatTimeout.
	ServerLostTimeout Duration `yaml:"server_lost_timeout"`
	// Retention is how long events, logs and final tasks are kept.
	Retention Duration `yaml:"retention"`
	// Cluster names this deployment at shared providers (a DNS label;
	// default: derived from the database URL). See ClusterName.
	Cluster string `yaml:"cluster"`
	// TLS makes the server speak HTTPS.
	TLS TLSConfig `yaml:"tls"`
	// LogFormat is "text" or "json"; LogLevel is debug|info|warn|error.
	LogFormat string `yaml:"log_format"`
	LogLevel  string `yaml:"log_level"`

	Tasks     TasksConfig            `yaml:"tasks"`
	Pools     map[string]*PoolConfig `yaml:"pools"`
	Breaker   BreakerConfig          `yaml:"breaker"`
	Auth      AuthConfig             `yaml:"auth"`
	Providers ProvidersConfig        `yaml:"providers"`
	Leader    LeaderConfig           `yaml:"leader"`
	Spend     SpendConfig            `yaml:"spend"`
	Outputs   OutputsConfig          `yaml:"outputs"`
	Webhooks  WebhooksConfig         `yaml:"webhooks"`
	Limits    LimitsConfig           `yaml:"limits"`
}

// TasksConfig holds task defaults.
type TasksConfig struct {
	MaxAttempts int      `yaml:"max_attempts"`
	MaxLost     int      `yaml:"max_lost"`
	QueueTTL    Duration `yaml:"queue_ttl"`
	// OwnerLimit is running tasks per owner; 0 = unlimited.
	OwnerLimit int `yaml:"owner_limit"`
	// MaxQueuedPerOwner caps each owner's queued tasks; a submit that
	// would exceed it is refused whole (429). 0 = no cap.
	MaxQueuedPerOwner int `yaml:"max_queued_per_owner"`
	// Timeout is the default per-attempt timeout.
	Timeout Duration `yaml:"timeout"`
	// TypeTimeouts and TypePools are per task type.
	TypeTimeouts map[string]Duration `yaml:"type_timeouts"`
	TypePools    map[string]string   `yaml:"type_pools"`
	BackoffBase  Duration            `yaml:"backoff_base"`
	BackoffMax   Duration            `yaml:"backoff_max"`
	// Callbacks maps an owner to the completion webhook URL of its tasks
	// that give no callback_url.
	Callbacks map[string]string `yaml:"callbacks"`
	// Types holds per-task-type settings (required outputs, output
	// retention).
	Types map[string]*TaskTypeConfig `yaml:"types"`
}

// PoolConfig is one pool of identical workers.
type PoolConfig struct {
	Provider         string   `yaml:"provider"`
	Min              int      `yaml:"min"`
	Max              int      `yaml:"max"`
	IdleBuffer       int      `yaml:"idle_buffer"`
	Concurrency      int      `yaml:"concurrency"`
	IdleTimeout      Duration `yaml:"idle_timeout"`
	ProvisionTimeout Duration `yaml:"provision_timeout"`
	BootTimeout      Duration `yaml:"boot_timeout"`
	DrainTimeout     Duration `yaml:"drain_timeout"`
	// OrphanGrace is how long an instance tagged as ours without a live
	// worker row survives before it is terminated.
	OrphanGrace     Duration          `yaml:"orphan_grace"`
	MaxSpawnPerTick int               `yaml:"max_spawn_per_tick"`
	MaxHourlySpend  float64           `yaml:"max_hourly_spend"`
	RequiresGPU     *bool             `yaml:"requires_gpu"`
	Image           string            `yaml:"image"`
	Env             map[string]string `yaml:"env"`
	Candidates      []CandidateConfig `yaml:"candidates"`
	// Exec is the handler command for local-provider agents.
	Exec string `yaml:"exec"`
	// RunPod holds the settings of a runpod pool (config/runpod.go).
	RunPod *RunPodPoolConfig `yaml:"runpod,omitempty"`
}

// CandidateConfig is one entry of a pool's candidate list; each region
// expands to one placement (one breaker key).
type CandidateConfig struct {
	GPU     string   `yaml:"gpu"`
	Regions []string `yaml:"regions"`
	Cloud   string   `yaml:"cloud"`
}

// Placements expands the candidates in order.
func (p *PoolConfig) Placements() []provider.Placement {
	var out []provider.Placement
	for _, c := range p.Candidates {
		regions := c.Regions
		if len(regions) == 0 {
			regions = []string{""}
		}
		for _, r := range regions {
			out = append(out, provider.Placement{GPU: c.GPU, Region: r, Cloud: c.Cloud})
		}
	}
	return out
}

// BreakerConfig holds the breaker parameters (DESIGN §4).
type BreakerConfig struct {
	Window         Duration `yaml:"window"`
	Threshold      float64  `yaml:"threshold"`
	MinSamples     int      `yaml:"min_samples"`
	MaxConsecutive int      `yaml:"max_consecutive"`
	Cooldown       Duration `yaml:"cooldown"`
	MaxCooldown    Duration `yaml:"max_cooldown"`
	// StartGrace: heartbeat-lost within this long after ready still counts
	// as a start failure.
	StartGrace Duration `yaml:"start_grace"`
}

// AuthConfig holds API credentials. Tokens come from env or files only.
type AuthConfig struct {
	// OperatorTokenFile holds the operator token; DROVER_OPERATOR_TOKEN
	// overrides it. Empty both → a random token is generated at start and
	// written to <data dir>/operator.token (never logged).
	OperatorTokenFile string `yaml:"operator_token_file"`
	OperatorToken     string `yaml:"-"`
	// OwnerTokensFile is a file of "owner:token" lines.
	OwnerTokensFile string            `yaml:"owner_tokens_file"`
	OwnerTokens     map[string]string `yaml:"-"` // token → owner
}

// ProvidersConfig configures providers.
type ProvidersConfig struct {
	RunPod RunPodConfig `yaml:"runpod"`
	Local  LocalConfig  `yaml:"local"`
}

// RunPodConfig configures the RunPod provider.
type RunPodConfig struct {
	APIKeyFile string `yaml:"api_key_file"`
	APIKey     string `yaml:"-"` // from DROVER_RUNPOD_API_KEY or the file
	BaseURL    string `yaml:"base_url"`
	// CallTimeout bounds every RunPod call the control loop makes (see
	// Config.CallTimeout).
	CallTimeout *Duration `yaml:"call_timeout,omitempty"`
}

// LocalConfig configures the local provider.
type LocalConfig struct {
	// Dir keeps agent pid files and logs (default: next to the database).
	Dir string `yaml:"dir"`
	// GPUs, when set, starts one agent per listed GPU index with
	// CUDA_VISIBLE_DEVICES.
	GPUs []int `yaml:"gpus"`
	// CallTimeout bounds every local provider call the control loop
	// makes (see Config.CallTimeout).
	CallTimeout *Duration `yaml:"call_timeout,omitempty"`
}

// LeaderConfig tunes leader election (PostgreSQL only).
type LeaderConfig struct {
	TTL      Duration `yaml:"ttl"`
	Interval Duration `yaml:"interval"`
}

// Duration is a time.Duration that reads "30s", "5m" or "168h" in YAML.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
