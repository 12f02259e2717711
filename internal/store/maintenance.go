package store

import (
	"context"
	"time"
)

// Housekeeping is what the leader's maintenance services (package
// maintenance) need from a backend besides the task rules and Prune: the
// deletion of old terminated worker rows and a refresh of the planner's
// statistics. Both backends implement it (store/sqlite/retention.go and
// maintenance.go, the same files under store/postgres).
type Housekeeping interface {
	// WorkerPrune deletes the rows of workers terminated (state
	// terminated) before before and returns how many. Live, failed and
	// terminating rows are never touched. Under a context carrying a Fence
	// it deletes nothing once the term is over (ErrFenced).
	WorkerPrune(ctx context.Context, before time.Time) (int, error)
	// Analyze refreshes the planner statistics of the tables the hot
	// queries read (tasks, workers). A backend whose plans do not depend on
	// statistics may do nothing.
	Analyze(ctx context.Context) error
}
