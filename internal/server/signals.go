package server

import (
	"fmt"
	"log/slog"

	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
)

// WireSignals connects q to the other replicas when the store can carry
// signals (PostgreSQL's LISTEN/NOTIFY): q's submits, completions, releases,
// requeues and registrations are sent to them, and theirs wake q's parked
// claims and this replica's control loop. It returns nil (and changes
// nothing) on a store without a bus: on SQLite the in-process path is all
// there is.
func WireSignals(st store.Store, q *queue.Service, log *slog.Logger) (store.SignalBus, error) {
	sg, ok := st.(store.Signaler)
	if !ok {
		return nil, nil
	}
	bus, err := sg.Signals(q.Receive, log)
	if err != nil {
		return nil, fmt.Errorf("start cross-replica signals: %w", err)
	}
	q.SetRelay(bus.Send)
	return bus, nil
}
