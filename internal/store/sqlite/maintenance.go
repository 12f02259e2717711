package sqlite

import "context"

// Analyze does nothing on SQLite: its plans are chosen without statistics,
// and the schema's partial indexes and the query shapes were written for
// that (plan_test.go pins the plans). Gathering statistics (ANALYZE,
// PRAGMA optimize) could only move the planner off the plans those tests
// check, so the leader's planner statistics service leaves SQLite alone.
func (s *Store) Analyze(ctx context.Context) error { return nil }
