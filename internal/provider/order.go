package provider

import "context"

// Orderer is implemented by providers that can re-order a pool's
// candidate placements by live stock (RunPod's catalog). The orchestrator
// calls it, when a pool asks for it, before trying the placements in
// order; an implementation keeps the given order when it knows nothing
// better.
type Orderer interface {
	Order(ctx context.Context, pool string, placements []Placement) []Placement
}
