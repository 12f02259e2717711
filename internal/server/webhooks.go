package server

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/webhook"
)

// NewWebhooks builds the completion webhook dispatcher of cfg. The signing
// secret is DROVER_WEBHOOK_SECRET when set, else read from (or created in)
// cfg's webhook secret file. The secret is never logged.
func NewWebhooks(cfg *config.Config, st store.Store, clock core.Clock, log *slog.Logger) (*webhook.Dispatcher, error) {
	secret := os.Getenv(config.WebhookSecretEnv)
	if secret == "" {
		var err error
		if secret, err = ReadOrCreateToken(cfg.WebhookSecretFile()); err != nil {
			return nil, fmt.Errorf("webhook secret file %s: %w", cfg.WebhookSecretFile(), err)
		}
	}
	return webhook.New(webhook.Config{
		Store: st, Clock: clock, Secret: []byte(secret),
		MaxAttempts: cfg.Webhooks.MaxAttempts, Budget: cfg.Webhooks.Budget.D(),
		Logger: log,
	})
}
