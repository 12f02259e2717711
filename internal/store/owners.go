package store

import "context"

// OwnerQueueCounter counts an owner's queued tasks, for
// tasks.max_queued_per_owner. Both backends implement it.
type OwnerQueueCounter interface {
	// TaskQueuedCountByOwner returns how many tasks of owner are queued,
	// counting at most atMost of them (a count that reaches atMost means
	// "atMost or more"), so its cost is bounded by the cap rather than by
	// the owner's backlog.
	TaskQueuedCountByOwner(ctx context.Context, owner string, atMost int) (int, error)
}
