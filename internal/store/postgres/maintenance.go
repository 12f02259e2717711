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
