package config

import (
	"net/url"
	"strings"
	"time"
)

// WebhooksConfig configures completion webhooks (see docs/outputs.md). A
// task's webhook URL is its callback_url, else tasks.callbacks[owner].
type WebhooksConfig struct {
	// SecretFile holds the HMAC-SHA256 signing secret (created, mode 0600,
	// when absent; default next to the database). The environment variable
	// DROVER_WEBHOOK_SECRET, when set, is used instead.
	SecretFile string `yaml:"secret_file"`
	// MaxAttempts bounds the attempts of one delivery (default 8).
	MaxAttempts int `yaml:"max_attempts"`
	// Budget bounds the time from the task's final state to the last
	// attempt (default 1h).
	Budget Duration `yaml:"budget"`
}

// WebhookSecretEnv names the environment variable that overrides
// webhooks.secret_file.
const WebhookSecretEnv = "DROVER_WEBHOOK_SECRET"

// WebhookSecretFile returns the effective webhook secret file.
func (c *Config) WebhookSecretFile() string {
	if c.Webhooks.SecretFile != "" {
		return c.Webhooks.SecretFile
	}
	if p, ok := strings.CutPrefix(c.Database, "sqlite://"); ok && p != "" && p != ":memory:" {
		return p + ".webhook.key"
	}
	return "drover-webhook.key"
}

func (c *Config) validateWebhooks(ck *checker) {
	w := c.Webhooks
	if w.MaxAttempts < 0 || w.MaxAttempts > 100 {
		ck.addf("webhooks.max_attempts", "must be 0..100 (0 = 8; got %d)", w.MaxAttempts)
	}
	if w.Budget < 0 || w.Budget.D() > 7*24*time.Hour {
		ck.addf("webhooks.budget", "must be 0..168h (0 = 1h; got %s)", w.Budget)
	}
	for _, owner := range sortedKeys(c.Tasks.Callbacks) {
		raw := c.Tasks.Callbacks[owner]
		field := "tasks.callbacks." + owner
		u, err := url.Parse(raw)
		switch {
		case len(raw) > 2048:
			ck.addf(field, "has %d characters; the limit is 2048", len(raw))
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			ck.addf(field, "must be an absolute http:// or https:// URL")
		case u.User != nil:
			ck.addf(field, "must not carry user:password; authenticate with the webhook signature")
		}
	}
}
