package server

import (
	"log/slog"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/dashboard"
	"github.com/droverhq/drover/internal/store"
)

// newDashboard builds the web dashboard served on the API port at /. Its
// breaker buttons go through the same Surface as the API's breaker routes.
func newDashboard(cfg *config.Config, st store.Store, clock core.Clock, log *slog.Logger, surface *Surface) (*dashboard.Handler, error) {
	return dashboard.New(dashboard.Config{
		Store: st, Clock: clock, Logger: log, Fleet: cfg, OperatorToken: cfg.Auth.OperatorToken,
		Breakers: surface,
	})
}
