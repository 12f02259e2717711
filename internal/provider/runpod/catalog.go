package runpod

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/provider"
)

// DefaultCatalogTTL is how long a catalog read (or a failure to read it)
// is reused.
const DefaultCatalogTTL = 3 * time.Minute

// OrderTimeout bounds the catalog read of Order.
const OrderTimeout = 3 * time.Second

// Catalog caches GET /v2/catalog/gpus with availability.
type Catalog struct {
	c   *Client
	ttl time.Duration

	mu      sync.Mutex
	gpus    map[string]GPUType
	readAt  time.Time
	lastErr error
}

// NewCatalog returns a catalog cache (ttl 0: DefaultCatalogTTL).
func NewCatalog(c *Client, ttl time.Duration) *Catalog {
	if ttl <= 0 {
		ttl = DefaultCatalogTTL
	}
	return &Catalog{c: c, ttl: ttl}
}

// GPUs returns the catalog, read again when older than the TTL. On an
// error the last good read (nil if none) is returned with the error, and
// the catalog is not asked again before the TTL has passed: an outage
// costs one call per TTL.
func (k *Catalog) GPUs(ctx context.Context) (map[string]GPUType, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.c.opt.Now()
	if !k.readAt.IsZero() && now.Sub(k.readAt) < k.ttl {
		return k.gpus, k.lastErr
	}
	list, err := k.c.GPUTypes(ctx)
	if err != nil {
		k.readAt, k.lastErr = now, err
		return k.gpus, err
	}
	k.lastErr = nil
	m := make(map[string]GPUType, len(list))
	for _, g := range list {
		m[g.ID] = g
	}
	k.gpus, k.readAt = m, now
	return m, nil
}

var availabilityRank = map[string]int{"HIGH": 3, "MEDIUM": 2, "LOW": 1, "NONE": 0}

// Order returns placements sorted by the catalog's stock, best first
// (stable: equal stock keeps the configured order). The stock of a
// placement is its data center's when the catalog lists it, else the GPU
// type's overall availability. When the catalog cannot be read and there
// is no earlier read, the configured order is kept.
func (k *Catalog) Order(ctx context.Context, placements []provider.Placement) []provider.Placement {
	// A slow catalog must not hold up the control loop.
	ctx, cancel := context.WithTimeout(ctx, OrderTimeout)
	defer cancel()
	gpus, _ := k.GPUs(ctx)
	out := slices.Clone(placements)
	if gpus == nil {
		return out
	}
	rank := func(pl provider.Placement) int {
		g, ok := gpus[pl.GPU]
		if !ok {
			return -1
		}
		if pl.Region != "" {
			for _, dc := range g.DataCenters {
				if dc.ID == pl.Region {
					return availabilityRank[dc.Availability]
				}
			}
			if g.DataCenters != nil {
				return 0
			}
		}
		return availabilityRank[g.Availability]
	}
	slices.SortStableFunc(out, func(a, b provider.Placement) int { return cmp.Compare(rank(b), rank(a)) })
	return out
}

// Order re-orders a pool's placements by the catalog's availability
// (candidates_order: availability). It implements provider.Orderer.
func (p *Provider) Order(ctx context.Context, pool string, placements []provider.Placement) []provider.Placement {
	return p.catalog.Order(ctx, placements)
}
