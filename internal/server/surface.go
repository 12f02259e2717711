package server

import (
	"context"
	"time"

	"github.com/droverhq/drover/internal/api"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/orchestrator"
	"github.com/droverhq/drover/internal/status"
	"github.com/droverhq/drover/internal/store"
)

// Surface implements api.Surface (and serves the dashboard): the status
// read models over the store and the config, and breaker actions through
// the orchestrator, so they run between ticks.
type Surface struct {
	Store        store.Store
	Config       *config.Config
	Clock        core.Clock
	Orchestrator *orchestrator.Orchestrator
}

var _ api.Surface = (*Surface)(nil)

// Status builds the status report now.
func (s *Surface) Status(ctx context.Context) (*status.Report, error) {
	return status.Build(ctx, s.Store, s.Config, s.Clock.Now())
}

// Why implements api.Surface.
func (s *Surface) Why(ctx context.Context, kind status.WhyKind, id string) (*status.WhyReport, error) {
	return status.Why(ctx, s.Store, s.Config, kind, id, s.Clock.Now())
}

// Breakers implements api.Surface.
func (s *Surface) Breakers(ctx context.Context) ([]status.Breaker, error) {
	return status.Breakers(ctx, s.Store, s.Config, s.Clock.Now())
}

// BreakerSet implements api.Surface.
func (s *Surface) BreakerSet(ctx context.Context, key, action, reason string) (*status.Breaker, error) {
	if _, err := s.Orchestrator.BreakerSet(ctx, key, action, reason); err != nil {
		return nil, err
	}
	bs, err := s.Breakers(ctx)
	if err != nil {
		return nil, err
	}
	for i := range bs {
		if bs[i].Key == key {
			return &bs[i], nil
		}
	}
	return nil, core.Errorf(core.ENOTFOUND, "no breaker with key %s", key)
}

// Series implements api.Surface.
func (s *Surface) Series(ctx context.Context, since, until time.Time) (*status.SeriesReport, error) {
	return status.Series(ctx, s.Store, since, until)
}
