package postgres

import (
	"context"
	"fmt"
)

// VacuumAnalyze runs VACUUM ANALYZE on the tasks, workers and events tables. The
// planner needs statistics to choose the ordered claim scan over a sort of
// the whole queue, and the visibility map makes the demand counts
// index-only. Autovacuum does this on its own when it is on (the default);
// benchmarks that bulk-load a million rows call it right after loading so
// they measure the steady state, not the minutes before the first
// autovacuum pass.
func (s *Store) VacuumAnalyze(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `VACUUM ANALYZE tasks, workers, events`); err != nil {
		return fmt.Errorf("vacuum analyze: %w", err)
	}
	return nil
}

// Analyze refreshes the planner statistics of tasks and workers (plain
// ANALYZE: it samples the tables, takes no lock that blocks reads or
// writes, and runs inside no transaction of ours). The leader's planner
// statistics service calls it; autovacuum does the same when it is on.
func (s *Store) Analyze(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `ANALYZE tasks, workers`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}
