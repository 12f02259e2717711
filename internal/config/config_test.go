package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/breaker"
)

func noEnv(string) string { return "" }

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func problems(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %T %v", err, err)
	}
	return ve.Problems
}

func TestDefaultIsValidAndZeroSetup(t *testing.T) {
	cfg, err := Load("", noEnv)
	if err != nil {
		t.Fatalf("Load(\"\"): %v", err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.Database != "sqlite://drover.db" || cfg.PublicURL != "http://127.0.0.1:8080" {
		t.Fatalf("defaults: listen %q database %q public %q", cfg.Listen, cfg.Database, cfg.PublicURL)
	}
	if cfg.Tick.D() != 2*time.Second || cfg.HeartbeatInterval.D() != 5*time.Second || cfg.HeartbeatTimeout.D() != 25*time.Second || cfg.Retention.D() != 168*time.Hour {
		t.Fatalf("timing defaults: %+v", cfg)
	}
	p := cfg.Pools["default"]
	if p == nil || p.Provider != "local" || p.Min != 0 || p.Max != 4 || p.GPURequired() || p.Concurrency != 1 ||
		p.BootTimeout.D() != 15*time.Minute || p.ProvisionTimeout.D() != 10*time.Minute || p.IdleTimeout.D() != 5*time.Minute ||
		p.MaxSpawnPerTick != 4 {
		t.Fatalf("default pool: %+v", p)
	}
	if cfg.Tasks.MaxAttempts != 3 || cfg.Tasks.MaxLost != 3 || cfg.Tasks.OwnerLimit != 5 || cfg.Tasks.QueueTTL.D() != 168*time.Hour {
		t.Fatalf("tasks: %+v", cfg.Tasks)
	}
	want := breaker.Config{}.WithDefaults()
	if got := cfg.BreakerConfig(); got != want {
		t.Fatalf("BreakerConfig = %+v, want %+v", got, want)
	}
}

const fullYAML = `
listen: 0.0.0.0:9090
database: postgres://drover:hunter2@db.internal/drover
tick: 3s
heartbeat_interval: 5s
heartbeat_timeout: 30s
tasks:
  owner_limit: 0
  type_timeouts:
    render: 2h
  type_pools:
    render: gpu
pools:
  gpu:
    provider: runpod
    max: 6
    boot_timeout: 20m
    image: registry.example.com/team/worker:1.4.2
    env:
      HF_TOKEN: abc
      MODEL: wan2
    candidates:
      - {gpu: "NVIDIA GeForce RTX 4090", regions: [EU-RO-1], cloud: SECURE}
      - {gpu: "NVIDIA L40S", regions: [EU-RO-1, EU-SE-1], cloud: SECURE}
breaker:
  threshold: 0.9
providers:
  runpod:
    api_key_file: KEYFILE
`

func TestLoadFullFile(t *testing.T) {
	keyFile := writeFile(t, "runpod", "rp_secret_key\n")
	path := writeFile(t, "drover.yaml", strings.ReplaceAll(fullYAML, "KEYFILE", keyFile))
	cfg, err := Load(path, envMap(map[string]string{"DROVER_OPERATOR_TOKEN": "op-token-123", "DROVER_LOG_LEVEL": "debug"}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, ok := cfg.Pools["default"]; ok {
		t.Fatal("the file's pools must replace the zero-setup pool")
	}
	p := cfg.Pools["gpu"]
	if p.Max != 6 || p.BootTimeout.D() != 20*time.Minute || p.ProvisionTimeout.D() != 10*time.Minute || !p.GPURequired() || p.Concurrency != 1 {
		t.Fatalf("pool gpu: %+v", p)
	}
	if n := len(p.Placements()); n != 3 {
		t.Fatalf("placements = %d, want 3", n)
	}
	if cfg.Tasks.OwnerLimit != 0 || cfg.Tasks.MaxAttempts != 3 || cfg.Tasks.TypeTimeouts["render"].D() != 2*time.Hour {
		t.Fatalf("tasks: %+v", cfg.Tasks)
	}
	if cfg.Breaker.Threshold != 0.9 || cfg.Breaker.Window.D() != 30*time.Minute {
		t.Fatalf("breaker: %+v", cfg.Breaker)
	}
	if cfg.Tick.D() != 3*time.Second || cfg.PublicURL != "http://127.0.0.1:9090" || cfg.LogLevel != "debug" {
		t.Fatalf("top level: tick %v public %q level %q", cfg.Tick, cfg.PublicURL, cfg.LogLevel)
	}
	if cfg.Providers.RunPod.APIKey != "rp_secret_key" || cfg.Auth.OperatorToken != "op-token-123" {
		t.Fatal("secrets not loaded from file and env")
	}

	red := cfg.Redacted()
	out, err := red.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "rp_secret_key", "op-token-123", "abc"} {
		if strings.Contains(string(out), secret) {
			t.Fatalf("redacted YAML contains secret %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(string(out), "postgres://drover:xxxxx@db.internal/drover") || !strings.Contains(string(out), "MODEL: wan2") ||
		!strings.Contains(string(out), "boot_timeout: 20m") {
		t.Fatalf("redacted YAML lost non-secret content:\n%s", out)
	}
	// Redacted does not touch the original.
	if cfg.Pools["gpu"].Env["HF_TOKEN"] != "abc" || cfg.Providers.RunPod.APIKey != "rp_secret_key" {
		t.Fatal("Redacted modified the original")
	}
	// The printed YAML loads back to the same shape.
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("re-parse printed YAML: %v", err)
	}
	if back.Pools["gpu"].BootTimeout != p.BootTimeout || back.Breaker.Threshold != 0.9 {
		t.Fatalf("round trip: %+v", back.Pools["gpu"])
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := Load("", envMap(map[string]string{
		"DROVER_LISTEN":     "127.0.0.1:7000",
		"DROVER_DATABASE":   "postgres://u@h/db",
		"DROVER_PUBLIC_URL": "https://drover.example.com",
		"DROVER_LOG_FORMAT": "json",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7000" || cfg.Database != "postgres://u@h/db" || cfg.PublicURL != "https://drover.example.com" || cfg.LogFormat != "json" {
		t.Fatalf("env overrides not applied: %+v", cfg)
	}
}

func TestUnknownKeyIsNamed(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"tick_rate: 2s\n", `unknown key "tick_rate"`},
		{"pools:\n  default:\n    provider: local\n    maxx: 3\n", `unknown key "maxx"`},
		{"breaker:\n  treshold: 0.5\n", `unknown key "treshold"`},
		{"tick: soon\n", `"soon" is not a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := Load(writeFile(t, "d.yaml", tt.yaml), noEnv)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %s", err, tt.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{"min > max", func(c *Config) { c.Pools["default"].Min = 5 }, []string{"pools.default.min: must be ≤ max 4 (got 5)"}},
		{"max < 1", func(c *Config) { c.Pools["default"].Max = 0 }, []string{"pools.default.max: must be between 1 and 10000 (got 0)"}},
		{"unknown provider", func(c *Config) { c.Pools["default"].Provider = "aws" }, []string{`pools.default.provider: unknown provider "aws"`}},
		{"empty candidates for sim", func(c *Config) { c.Pools["default"].Provider = "sim" }, []string{"pools.default.candidates: a sim pool needs at least one candidate"}},
		{"runpod without key and image", func(c *Config) {
			c.Pools["default"].Provider = "runpod"
			c.Pools["default"].Candidates = []CandidateConfig{{GPU: "NVIDIA GeForce RTX 4090", Regions: []string{"EU-RO-1"}}}
		}, []string{"pools.default.image: a runpod pool needs an image", "providers.runpod: a pool uses runpod but there is no API key"}},
		{"zero and negative timeouts", func(c *Config) {
			c.Pools["default"].BootTimeout = 0
			c.Pools["default"].IdleTimeout = Duration(-time.Second)
			c.Tick = 0
		}, []string{"tick: must be > 0 (got 0s)", "pools.default.idle_timeout: must be > 0 (got -1s)", "pools.default.boot_timeout: must be > 0 (got 0s)"}},
		{"breaker threshold", func(c *Config) { c.Breaker.Threshold = 1.5 }, []string{"breaker.threshold: must be in (0, 1]"}},
		{"breaker threshold zero", func(c *Config) { c.Breaker.Threshold = 0 }, []string{"breaker.threshold: must be in (0, 1]"}},
		{"heartbeat timeout", func(c *Config) { c.HeartbeatTimeout = c.HeartbeatInterval }, []string{"heartbeat_timeout: must be greater than heartbeat_interval 5s (got 5s)"}},
		{"type pool missing", func(c *Config) { c.Tasks.TypePools = map[string]string{"render": "gpu-big"} }, []string{`tasks.type_pools.render: pool "gpu-big" is not defined under pools`}},
		{"server lost timeout", func(c *Config) { c.ServerLostTimeout = Duration(10 * time.Second) }, []string{"server_lost_timeout: must be 0 (= 4 × heartbeat_timeout) or greater than heartbeat_timeout 25s (got 10s)"}},
		{"tasks limits", func(c *Config) {
			c.Tasks.MaxAttempts = 0
			c.Tasks.OwnerLimit = -1
			c.Tasks.TypePools = map[string]string{"x": "nope"}
		},
			[]string{"tasks.max_attempts: must be between 1 and 100 (got 0)", "tasks.owner_limit: must be ≥ 0", `tasks.type_pools.x: pool "nope" is not defined`}},
		{"duplicate placement", func(c *Config) {
			c.Pools["default"].Candidates = []CandidateConfig{{GPU: "A", Regions: []string{"R"}}, {GPU: "A", Regions: []string{"R"}}}
		}, []string{`pools.default.candidates: placement gpu="A" region="R" is listed twice`}},
		{"bad listen, database, log", func(c *Config) { c.Listen = "8080"; c.Database = "mysql://x"; c.LogLevel = "loud" },
			[]string{"listen: must be host:port", "database: must start with sqlite:// or postgres://", "log_level: must be one of debug, info, warn, error"}},
		{"bad pool name", func(c *Config) { c.Pools["GPU Pool"] = DevPool() }, []string{"pools.GPU Pool: pool name must match"}},
		{"no pools", func(c *Config) { c.Pools = nil }, []string{"pools: at least one pool is required"}},
		{"part size too small", func(c *Config) { c.Outputs.PartSize = 1 << 20 }, []string{"outputs.part_size: must be ≥ 5 MiB (5242880 bytes), S3's smallest part (got 1048576)"}},
		{"part size too large", func(c *Config) { c.Outputs.PartSize = 6 << 30 }, []string{"outputs.part_size: must be ≤ 5 GiB (5368709120 bytes), S3's largest part (got 6442450944)"}},
		{"local pool without exec", func(c *Config) { c.Pools["default"].Exec = " " }, []string{"pools.default.exec: a local pool needs the handler command its agents run"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.PublicURL = "http://127.0.0.1:8080"
			tt.mutate(cfg)
			got := problems(t, cfg.Validate())
			for _, w := range tt.want {
				found := false
				for _, g := range got {
					if strings.HasPrefix(g, w) || strings.Contains(g, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("missing problem %q in\n%s", w, strings.Join(got, "\n"))
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
		})
	}
}

func TestExplicitZeroInPoolIsKept(t *testing.T) {
	_, err := Load(writeFile(t, "d.yaml", "pools:\n  default:\n    provider: local\n    max: 0\n    boot_timeout: 0s\n"), noEnv)
	got := problems(t, err)
	want := []string{"pools.default.max: must be between 1 and 10000 (got 0)", "pools.default.boot_timeout: must be > 0 (got 0s)"}
	for _, w := range want {
		if !strings.Contains(strings.Join(got, "\n"), w) {
			t.Errorf("missing %q in %v", w, got)
		}
	}
}

func TestSecretFiles(t *testing.T) {
	owners := writeFile(t, "owners", "# comment\nalice:aaaaaaaaaaaaaaaaaaaa\n\nbob: bbbbbbbbbbbbbbbbbbbb\n")
	y := "auth:\n  owner_tokens_file: " + owners + "\n  operator_token_file: " + filepath.Join(t.TempDir(), "missing") + "\n"
	cfg, err := Load(writeFile(t, "d.yaml", y), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth.OwnerTokens["aaaaaaaaaaaaaaaaaaaa"] != "alice" || cfg.Auth.OwnerTokens["bbbbbbbbbbbbbbbbbbbb"] != "bob" {
		t.Fatalf("owner tokens: %v", cfg.Auth.OwnerTokens)
	}
	if cfg.Auth.OperatorToken != "" {
		t.Fatal("missing operator token file must leave the token empty (serve generates it)")
	}
	red := cfg.Redacted()
	for tok := range red.Auth.OwnerTokens {
		if strings.Contains(tok, "aaaa") || strings.Contains(tok, "bbbb") {
			t.Fatalf("Redacted kept an owner token: %v", red.Auth.OwnerTokens)
		}
	}

	bad := writeFile(t, "owners", "alice:short\n")
	_, err = Load(writeFile(t, "d.yaml", "auth:\n  owner_tokens_file: "+bad+"\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "line 1: token of owner \"alice\" is shorter than 16") || strings.Contains(err.Error(), "short\n") {
		t.Fatalf("bad owner file: %v", err)
	}
	_, err = Load(writeFile(t, "d.yaml", "providers:\n  runpod:\n    api_key_file: /nonexistent/key\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "providers.runpod.api_key_file") {
		t.Fatalf("missing key file: %v", err)
	}
}

func TestDurationYAML(t *testing.T) {
	tests := map[string]time.Duration{"30s": 30 * time.Second, "5m": 5 * time.Minute, "168h": 168 * time.Hour, "1h30m": 90 * time.Minute, "0": 0}
	for in, want := range tests {
		cfg, err := Parse([]byte("retention: " + in + "\n"))
		if err != nil || cfg.Retention.D() != want {
			t.Errorf("retention %q = %v, %v; want %v", in, cfg.Retention, err, want)
		}
	}
	if s := Duration(90 * time.Minute).String(); s != "1h30m" {
		t.Errorf("String = %q", s)
	}
	if s := Duration(5 * time.Minute).String(); s != "5m" {
		t.Errorf("String = %q", s)
	}
}

func TestRedactURL(t *testing.T) {
	if got := RedactURL("postgres://u:pw@h:5432/db?sslmode=disable"); got != "postgres://u:xxxxx@h:5432/db?sslmode=disable" {
		t.Fatalf("RedactURL = %q", got)
	}
	if got := RedactURL("postgres://u@h:5432/db?password=pw&sslpassword=k"); got != "postgres://u@h:5432/db?password=xxxxx&sslpassword=xxxxx" {
		t.Fatalf("RedactURL = %q", got)
	}
	if got := RedactURL("sqlite://drover.db"); got != "sqlite://drover.db" {
		t.Fatalf("RedactURL = %q", got)
	}
}
