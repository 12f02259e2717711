package orchestrator

import (
	"context"

	"github.com/droverhq/drover/internal/provider"
)

// orderedPlacements returns the pool's placements in the order to try
// them: as configured, or re-ordered by the provider's live stock when the
// pool asks for it (runpod.candidates_order: availability) and the provider
// can (provider.Orderer). The provider keeps the configured order when it
// knows nothing better.
func (o *Orchestrator) orderedPlacements(ctx context.Context, ps poolSettings) []provider.Placement {
	pl := ps.cfg.Placements()
	if ps.cfg.RunPod == nil || ps.cfg.RunPod.CandidatesOrder != "availability" {
		return pl
	}
	// Decorators (instrumentation, call deadlines) may wrap the provider:
	// look through them for the Orderer.
	p := o.providers[ps.cfg.Provider]
	for p != nil {
		if ord, ok := p.(provider.Orderer); ok {
			return ord.Order(ctx, ps.name, pl)
		}
		u, ok := p.(interface{ Unwrap() provider.Provider })
		if !ok {
			break
		}
		p = u.Unwrap()
	}
	return pl
}
