package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/droverhq/drover/internal/breaker"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/dashboard"
	"github.com/droverhq/drover/internal/store"
)

// newDashboard builds the web dashboard served on the API port at /.
func newDashboard(cfg *config.Config, st store.Store, clock core.Clock, log *slog.Logger, wake func(string)) (*dashboard.Handler, error) {
	return dashboard.New(dashboard.Config{
		Store: st, Clock: clock, Logger: log, Fleet: cfg, OperatorToken: cfg.Auth.OperatorToken,
		Breakers: breakerControl{st: st, clock: clock, cfg: cfg, wake: wake},
	})
}

// breakerControl is the operator's breaker reset and open.
type breakerControl struct {
	st    store.Store
	clock core.Clock
	cfg   *config.Config
	wake  func(string)
}

func (b breakerControl) load(ctx context.Context, key string) (*core.BreakerState, error) {
	all, err := b.st.BreakerGetAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("load breakers: %w", err)
	}
	for _, s := range all {
		if s.Key == key {
			return s, nil
		}
	}
	for name, pc := range b.cfg.Pools {
		for _, pl := range pc.Placements() {
			if pl.Key(name) == key {
				return breaker.New(key, b.clock.Now()), nil
			}
		}
	}
	return nil, core.Errorf(core.ENOTFOUND, "no breaker with key %s", key)
}

// ResetBreaker closes the breaker of key and forgets its outcomes.
func (b breakerControl) ResetBreaker(ctx context.Context, key string) error {
	return b.change(ctx, key, "reset", func(s *core.BreakerState) { breaker.Reset(s, b.clock.Now()) })
}

// OpenBreaker opens the breaker of key with reason.
func (b breakerControl) OpenBreaker(ctx context.Context, key, reason string) error {
	return b.change(ctx, key, "open", func(s *core.BreakerState) {
		breaker.Trip(b.cfg.BreakerConfig(), s, b.clock.Now(), reason)
	})
}

func (b breakerControl) change(ctx context.Context, key, verb string, apply func(*core.BreakerState)) error {
	s, err := b.load(ctx, key)
	if err != nil {
		return err
	}
	apply(s)
	if err := b.st.BreakerPut(ctx, s); err != nil {
		return fmt.Errorf("%s breaker %s: %w", verb, key, err)
	}
	pool, _, _ := strings.Cut(key, "/")
	ev := &core.Event{Time: b.clock.Now(), Kind: core.EventBreakerState, Pool: pool,
		Message: fmt.Sprintf("breaker %s by an operator for %s", verb, breaker.KeyLabel(key)), Data: []byte(`{"transition":"` + verb + `"}`)}
	if err := b.st.EventInsertMany(ctx, []*core.Event{ev}); err != nil {
		return fmt.Errorf("record breaker %s: %w", verb, err)
	}
	if b.wake != nil {
		b.wake("breaker " + verb)
	}
	return nil
}
