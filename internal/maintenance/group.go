package maintenance

import (
	"context"
	"sync"
)

// Group starts and stops a set of services together (Runner): the
// leader's maintenance is one Group, started when this replica wins
// leadership and stopped when it loses it or shuts down.
type Group struct {
	lifecycle
	services []*Service
}

// NewGroup returns a stopped group of services.
func NewGroup(services ...*Service) *Group { return &Group{services: services} }

// Services returns the group's services, in order.
func (g *Group) Services() []*Service { return g.services }

// Start starts every service under ctx (see Runner). The group's run ends
// when Stop is called or ctx ends; then every service has stopped.
func (g *Group) Start(ctx context.Context) error {
	g.lifecycle.start(ctx, func(ctx context.Context) {
		for _, s := range g.services {
			_ = s.Start(ctx)
		}
	}, func(ctx context.Context) {
		<-ctx.Done()
		g.stopAll()
	})
	return nil
}

// Stop stops every service, in parallel, and returns once all have
// stopped (see Runner).
func (g *Group) Stop() { g.lifecycle.stop() }

func (g *Group) stopAll() {
	var wg sync.WaitGroup
	for _, s := range g.services {
		wg.Go(s.Stop)
	}
	wg.Wait()
}

// Kick asks every started service to read the clock now.
func (g *Group) Kick() {
	for _, s := range g.services {
		s.Kick()
	}
}

// RunDue runs, in the caller's goroutine and in order, every service whose
// interval has passed (Service.RunDue). It returns the names of the
// services that ran and the first error.
func (g *Group) RunDue(ctx context.Context) ([]string, error) {
	var ran []string
	var first error
	for _, s := range g.services {
		ok, err := s.RunDue(ctx)
		if ok {
			ran = append(ran, s.name)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return ran, first
}
