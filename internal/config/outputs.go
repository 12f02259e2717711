package config

import (
	"fmt"
	"strings"
	"time"
)

// OutputsConfig is where task outputs are stored and the limits of what a
// task may upload. See docs/outputs.md.
type OutputsConfig struct {
	// Store is the bucket URL: empty = a directory next to the SQLite
	// database (<db>.outputs/; ./drover-outputs with PostgreSQL), a plain
	// path or file:// URL = that directory, or s3://, gs://, azblob://.
	Store string `yaml:"store"`
	// MaxFileSize bounds one output, in bytes (default 10 GiB).
	MaxFileSize int64 `yaml:"max_file_size"`
	// MaxFiles bounds the outputs of one task (default 1000).
	MaxFiles int `yaml:"max_files"`
	// URLExpiry bounds signed upload and download URLs (default 15m).
	URLExpiry Duration `yaml:"url_expiry"`
	// PartSize is the multipart part size for S3 (default 256 MiB,
	// 5 MiB to 5 GiB).
	PartSize int64 `yaml:"part_size"`
	// SigningKeyFile holds the secret that signs the embedded store's
	// URLs (created, mode 0600, when absent; default next to the store).
	SigningKeyFile string `yaml:"signing_key_file"`
	// Retention keeps outputs this long after their task finished
	// (default and maximum: retention; tasks.types.T.output_retention may
	// keep one type's shorter).
	Retention Duration `yaml:"retention"`
}

// TaskTypeConfig holds per-task-type settings (tasks.types.T).
type TaskTypeConfig struct {
	// Outputs are the files every task of the type must produce.
	Outputs []string `yaml:"outputs"`
	// OutputRetention keeps this type's outputs shorter than
	// outputs.retention (0 = that default).
	OutputRetention Duration `yaml:"output_retention"`
	// StallTimeout, when set, fails a running attempt of this type whose
	// handler reported no progress and wrote no log line for that long
	// (retryable, reason "stalled"). See StallTimeouts.
	StallTimeout Duration `yaml:"stall_timeout"`
}

// OutputStoreURL returns the effective output store.
func (c *Config) OutputStoreURL() string {
	if c.Outputs.Store != "" {
		return c.Outputs.Store
	}
	if p, ok := strings.CutPrefix(c.Database, "sqlite://"); ok && p != "" && p != ":memory:" {
		return p + ".outputs"
	}
	return "drover-outputs"
}

// OutputSigningKeyFile returns the effective signing key file.
func (c *Config) OutputSigningKeyFile() string {
	if c.Outputs.SigningKeyFile != "" {
		return c.Outputs.SigningKeyFile
	}
	if p, ok := strings.CutPrefix(c.Database, "sqlite://"); ok && p != "" && p != ":memory:" {
		return p + ".outputs.key"
	}
	return "drover-outputs.key"
}

// RequiredOutputs returns the required outputs of a task type.
func (c *Config) RequiredOutputs(taskType string) []string {
	if t := c.Tasks.Types[taskType]; t != nil {
		return t.Outputs
	}
	return nil
}

// RequiredOutputsByType maps every task type with required outputs to
// them.
func (c *Config) RequiredOutputsByType() map[string][]string {
	m := map[string][]string{}
	for name, t := range c.Tasks.Types {
		if t != nil && len(t.Outputs) > 0 {
			m[name] = t.Outputs
		}
	}
	return m
}

// OutputRetention returns how long a task type's outputs are kept: the
// type's output_retention, else outputs.retention, never longer than
// retention (tasks and their outputs go together).
func (c *Config) OutputRetention(taskType string) time.Duration {
	d := c.Retention.D()
	if r := c.Outputs.Retention.D(); r > 0 && (d <= 0 || r < d) {
		d = r
	}
	if t := c.Tasks.Types[taskType]; t != nil {
		if r := t.OutputRetention.D(); r > 0 && (d <= 0 || r < d) {
			d = r
		}
	}
	return d
}

// validateOutputs checks the outputs section and tasks.types.
func (c *Config) validateOutputs(ck *checker) {
	o := c.Outputs
	if o.MaxFileSize < 0 {
		ck.addf("outputs.max_file_size", "must be ≥ 0 bytes (0 = 10 GiB; got %d)", o.MaxFileSize)
	}
	if o.MaxFiles < 0 || o.MaxFiles > 100000 {
		ck.addf("outputs.max_files", "must be 0..100000 (0 = 1000; got %d)", o.MaxFiles)
	}
	if o.PartSize != 0 && o.PartSize < 5<<20 {
		ck.addf("outputs.part_size", "must be ≥ 5 MiB (5242880 bytes), S3's smallest part (got %d)", o.PartSize)
	}
	if o.PartSize > 5<<30 {
		ck.addf("outputs.part_size", "must be ≤ 5 GiB (5368709120 bytes), S3's largest part (got %d)", o.PartSize)
	}
	if o.URLExpiry < 0 || o.URLExpiry.D() > 7*24*time.Hour {
		ck.addf("outputs.url_expiry", "must be 0..168h (0 = 15m; got %s)", o.URLExpiry)
	}
	if o.Retention < 0 {
		ck.addf("outputs.retention", "must be ≥ 0 (got %s)", o.Retention)
	}
	if s := o.Store; strings.Contains(s, "://") {
		scheme, _, _ := strings.Cut(s, "://")
		switch scheme {
		case "file", "s3", "gs", "azblob":
		default:
			ck.addf("outputs.store", "must be a path, file://, s3://, gs:// or azblob:// URL (got scheme %q)", scheme)
		}
	}
	for _, name := range sortedKeys(c.Tasks.Types) {
		t := c.Tasks.Types[name]
		if t == nil {
			continue
		}
		for i, out := range t.Outputs {
			if out == "" || strings.ContainsAny(out, "/\\\x00") || out == "." || out == ".." || strings.HasPrefix(out, ".") {
				ck.addf(fmt.Sprintf("tasks.types.%s.outputs[%d]", name, i), "must be a plain file name without path separators (got %q)", out)
			}
		}
		if t.OutputRetention < 0 {
			ck.addf(fmt.Sprintf("tasks.types.%s.output_retention", name), "must be ≥ 0 (got %s)", t.OutputRetention)
		}
	}
}
