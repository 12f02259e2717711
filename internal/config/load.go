package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/redact"
	"gopkg.in/yaml.v3"
)

// Environment variables that override the file. Secrets come only from the
// environment or from files named in the config, never from the YAML itself.
const (
	EnvListen        = "DROVER_LISTEN"
	EnvDatabase      = "DROVER_DATABASE"
	EnvPublicURL     = "DROVER_PUBLIC_URL"
	EnvOperatorToken = "DROVER_OPERATOR_TOKEN"
	EnvRunPodAPIKey  = "DROVER_RUNPOD_API_KEY"
	EnvRunPodBaseURL = "DROVER_RUNPOD_BASE_URL"
	EnvLogLevel      = "DROVER_LOG_LEVEL"
	EnvLogFormat     = "DROVER_LOG_FORMAT"
)

// UnmarshalYAML reads a Go duration string such as "30s", "5m" or "168h".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration like \"30s\" or \"5m\"", n.Line)
	}
	if n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. \"30s\", \"5m\", \"168h\")", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String formats d like time.Duration, without trailing zero units
// ("5m", "1h30m", "168h").
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Load reads the configuration at path (empty: the built-in Default),
// applies the DROVER_… overrides from env (nil: os.Getenv), fills the
// defaults, reads secret files and validates the result. YAML is strict:
// unknown keys are errors naming the key. A *ValidationError lists every
// problem, one per line.
func Load(path string, env func(string) string) (*Config, error) {
	if env == nil {
		env = os.Getenv
	}
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		if err := parse(cfg, data); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	applyEnv(cfg, env)
	if cfg.PublicURL == "" {
		cfg.PublicURL = publicURLFor(cfg.Listen)
	}
	if err := readSecrets(cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// One default, shown by `drover config check` and used by the server.
	cfg.Providers.Local.Dir = cfg.EffectiveLocalDir()
	return cfg, nil
}

// Parse decodes YAML data over the defaults, without environment overrides,
// secret files or validation. Tests and `drover simulate` use it.
func Parse(data []byte) (*Config, error) {
	cfg := Default()
	if err := parse(cfg, data); err != nil {
		return nil, err
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = publicURLFor(cfg.Listen)
	}
	return cfg, nil
}

func parse(cfg *Config, data []byte) error {
	// The file's pools replace the zero-setup pool; top-level fields and
	// the tasks/breaker/leader sections decode over the defaults.
	cfg.Pools = nil
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return yamlError(err)
	}
	// Which pool keys were written explicitly: those keep their value
	// (even 0) and face Validate; the others get defaults.
	var raw struct {
		Pools map[string]map[string]yaml.Node `yaml:"pools"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return yamlError(err)
	}
	if len(cfg.Pools) == 0 && raw.Pools == nil {
		cfg.Pools = Default().Pools
	}
	for name, p := range cfg.Pools {
		if p == nil {
			p = &PoolConfig{}
			cfg.Pools[name] = p
		}
		set := map[string]bool{}
		for k := range raw.Pools[name] {
			set[k] = true
		}
		p.fillDefaults(set)
	}
	return nil
}

// yamlError turns yaml.v3's multi-line type errors into one line per
// problem, e.g. `line 4: field tick_rate not found in type config.Config`
// becomes `line 4: unknown key "tick_rate"`.
func yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("parse yaml: %w", err)
	}
	lines := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if i := strings.Index(e, "field "); i >= 0 && strings.Contains(e, " not found in type ") {
			key := e[i+len("field "):]
			key = key[:strings.Index(key, " not found in type ")]
			e = fmt.Sprintf("%sunknown key %q", e[:i], key)
		}
		lines = append(lines, e)
	}
	return &ValidationError{Problems: lines}
}

func applyEnv(cfg *Config, env func(string) string) {
	set := func(dst *string, key string) {
		if v := strings.TrimSpace(env(key)); v != "" {
			*dst = v
		}
	}
	set(&cfg.Listen, EnvListen)
	set(&cfg.Database, EnvDatabase)
	set(&cfg.PublicURL, EnvPublicURL)
	set(&cfg.LogLevel, EnvLogLevel)
	set(&cfg.LogFormat, EnvLogFormat)
	set(&cfg.Providers.RunPod.BaseURL, EnvRunPodBaseURL)
	set(&cfg.Auth.OperatorToken, EnvOperatorToken)
	set(&cfg.Providers.RunPod.APIKey, EnvRunPodAPIKey)
}

// publicURLFor is the URL agents use when public_url is not set: http://
// plus the listen address, with a wildcard host replaced by 127.0.0.1.
func publicURLFor(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// readSecrets fills secrets from the files the config names, unless the
// environment already gave them. A missing operator token file is not an
// error: `drover serve` generates the token there.
func readSecrets(cfg *Config) error {
	var problems []string
	if cfg.Auth.OperatorToken == "" && cfg.Auth.OperatorTokenFile != "" {
		tok, err := readSecretFile(cfg.Auth.OperatorTokenFile)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			problems = append(problems, "auth.operator_token_file: "+err.Error())
		default:
			cfg.Auth.OperatorToken = tok
		}
	}
	if cfg.Providers.RunPod.APIKey == "" && cfg.Providers.RunPod.APIKeyFile != "" {
		key, err := readSecretFile(cfg.Providers.RunPod.APIKeyFile)
		if err != nil {
			problems = append(problems, "providers.runpod.api_key_file: "+err.Error())
		} else {
			cfg.Providers.RunPod.APIKey = key
		}
	}
	if cfg.Auth.OwnerTokensFile != "" {
		toks, err := readOwnerTokens(cfg.Auth.OwnerTokensFile)
		if err != nil {
			problems = append(problems, "auth.owner_tokens_file: "+err.Error())
		} else {
			cfg.Auth.OwnerTokens = toks
		}
	}
	if len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

func readSecretFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// readOwnerTokens reads "owner:token" lines (blank lines and # comments
// skipped) into a token → owner map. Errors name the line, never the token.
func readOwnerTokens(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		owner, tok, ok := strings.Cut(line, ":")
		owner, tok = strings.TrimSpace(owner), strings.TrimSpace(tok)
		if !ok || owner == "" || tok == "" {
			return nil, fmt.Errorf("%s line %d: want owner:token", path, n)
		}
		if len(tok) < 16 {
			return nil, fmt.Errorf("%s line %d: token of owner %q is shorter than 16 characters", path, n, owner)
		}
		if _, dup := out[tok]; dup {
			return nil, fmt.Errorf("%s line %d: token of owner %q is used twice", path, n, owner)
		}
		out[tok] = owner
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// Mask is what Redacted puts in place of a secret.
const Mask = "****"

// Redacted returns a deep enough copy of c with every secret masked: the
// operator and owner tokens, the RunPod API key, a database URL password,
// and pool env values whose names look secret (TOKEN, KEY, SECRET,
// PASSWORD, CREDENTIAL).
func (c *Config) Redacted() *Config {
	r := *c
	if r.Auth.OperatorToken != "" {
		r.Auth.OperatorToken = Mask
	}
	if len(r.Auth.OwnerTokens) > 0 {
		m := make(map[string]string, len(r.Auth.OwnerTokens))
		i := 0
		for _, owner := range r.Auth.OwnerTokens {
			i++
			m[fmt.Sprintf("%s#%d", Mask, i)] = owner
		}
		r.Auth.OwnerTokens = m
	}
	if r.Providers.RunPod.APIKey != "" {
		r.Providers.RunPod.APIKey = Mask
	}
	r.Database = RedactURL(r.Database)
	r.Pools = make(map[string]*PoolConfig, len(c.Pools))
	for name, p := range c.Pools {
		if p == nil {
			r.Pools[name] = nil
			continue
		}
		cp := *p
		if len(p.Env) > 0 {
			cp.Env = make(map[string]string, len(p.Env))
			for k, v := range p.Env {
				if SecretName(k) {
					v = Mask
				}
				cp.Env[k] = v
			}
		}
		r.Pools[name] = &cp
	}
	return &r
}

// SecretName reports whether an environment variable name looks like it
// holds a secret.
func SecretName(name string) bool {
	u := strings.ToUpper(name)
	for _, s := range []string{"TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"} {
		if strings.Contains(u, s) {
			return true
		}
	}
	return false
}

// RedactURL masks every credential of a database URL or DSN (see package
// redact). Strings without one are returned unchanged.
func RedactURL(s string) string {
	return redact.DatabaseURL(s)
}

// YAML renders c as YAML (call Redacted first when printing).
func (c *Config) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

// Describe renders the effective configuration for `drover config check`:
// the YAML with secrets masked, preceded by a comment saying where each
// secret came from (set or not, never its value).
func (c *Config) Describe(env func(string) string) ([]byte, error) {
	if env == nil {
		env = os.Getenv
	}
	out, err := c.Redacted().YAML()
	if err != nil {
		return nil, err
	}
	source := func(val, envName, file string) string {
		switch {
		case val == "":
			return "not set"
		case env(envName) != "":
			return "set (from " + envName + ")"
		case file != "":
			return "set (from " + file + ")"
		}
		return "set"
	}
	var b bytes.Buffer
	b.WriteString("# Effective Drover configuration (secrets masked).\n")
	fmt.Fprintf(&b, "# operator token: %s\n", source(c.Auth.OperatorToken, EnvOperatorToken, c.Auth.OperatorTokenFile))
	if c.usesProvider("runpod") || c.Providers.RunPod.APIKey != "" {
		fmt.Fprintf(&b, "# runpod api key: %s\n", source(c.Providers.RunPod.APIKey, EnvRunPodAPIKey, c.Providers.RunPod.APIKeyFile))
	}
	if n := len(c.Auth.OwnerTokens); n > 0 {
		fmt.Fprintf(&b, "# owner tokens: %d\n", n)
	}
	b.Write(out)
	return b.Bytes(), nil
}
