package apitest

import (
	"context"
	"fmt"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/google/uuid"
	"log/slog"
	"testing"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/orchestrator"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/provider/sim"
)

// orchestrator returns the control loop over the bundle's store, queue and
// clock, with the default pool on the sim provider, for tests of the
// operator actions it applies.
func (b *testBundle) orchestrator(t *testing.T) *orchestrator.Orchestrator {
	t.Helper()
	cfg := config.Default()
	cfg.Pools["default"].Provider = "sim"
	o, err := orchestrator.New(orchestrator.Deps{
		Store: b.st, Queue: b.q, Clock: b.clock, Config: cfg,
		Providers: map[string]provider.Provider{"sim": sim.New(b.clock, sim.Options{})},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("orchestrator.New: %v", err)
	}
	return o
}

// tick runs one control-loop tick and fails the test on error.
func tick(t *testing.T, o *orchestrator.Orchestrator) {
	t.Helper()
	if _, err := o.Tick(t.Context()); err != nil {
		t.Fatalf("tick: %v", err)
	}
}

// worker reads a worker as the API lists it.
func (b *testBundle) worker(ctx context.Context, id uuid.UUID) (*wire.Worker, error) {
	ws, err := b.op.Workers(ctx, wire.WorkerFilter{})
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if w.ID == id {
			return w, nil
		}
	}
	return nil, fmt.Errorf("worker %s not listed", id)
}
