package queue

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// OwnerQueueRetryAfter is the Retry-After of a submit refused because its
// owner's queue is full: queued tasks leave the queue as workers start
// them, so a while later there is room again.
const OwnerQueueRetryAfter = 30 * time.Second

// OwnerQueueFullError refuses a submit that would take an owner past
// Config.MaxQueuedPerOwner. It carries the code core.EOWNERQUEUEFULL (HTTP
// 429) and a Retry-After.
type OwnerQueueFullError struct {
	Owner  string
	Cap    int // tasks.max_queued_per_owner
	Queued int // the owner's queued tasks now
	Adding int // tasks of this owner in the refused submit
}

// Error implements error.
func (e *OwnerQueueFullError) Error() string {
	queued := fmt.Sprint(e.Queued)
	if e.Queued > e.Cap {
		queued = fmt.Sprintf("more than %d", e.Cap)
	}
	return fmt.Sprintf("owner %q has %s queued tasks and this submit adds %d: over tasks.max_queued_per_owner (%d); nothing was submitted, retry once some have started",
		e.Owner, queued, e.Adding, e.Cap)
}

// Unwrap gives the application error (code owner_queue_full, field owner).
func (e *OwnerQueueFullError) Unwrap() error {
	return &core.Error{Code: core.EOWNERQUEUEFULL, Field: "owner", Message: e.Error()}
}

// RetryAfter is when the caller should try again.
func (e *OwnerQueueFullError) RetryAfter() time.Duration { return OwnerQueueRetryAfter }

// checkOwnerCap refuses a whole submit when one of its owners would have
// more than MaxQueuedPerOwner queued tasks. Every task counts, including an
// idempotent resubmission of a task that exists (it adds nothing, but is
// only recognised inside the insert). The count is read before the insert,
// outside its transaction: concurrent submits of one owner may overshoot
// the cap by what they add together. A cap of 0 costs nothing.
func (s *Service) checkOwnerCap(ctx context.Context, tasks []*core.Task) error {
	limit := s.cfg.MaxQueuedPerOwner
	if limit <= 0 {
		return nil
	}
	adding := map[string]int{}
	for _, t := range tasks {
		adding[t.Owner]++
	}
	owners := make([]string, 0, len(adding))
	for o := range adding {
		owners = append(owners, o)
	}
	slices.Sort(owners)
	counter, ok := s.st.(store.OwnerQueueCounter)
	if !ok {
		return fmt.Errorf("submit: tasks.max_queued_per_owner is set but this store cannot count queued tasks per owner")
	}
	for _, o := range owners {
		// Count no further than just past the cap: the cost is bounded
		// by the cap, not by the owner's backlog.
		n, err := counter.TaskQueuedCountByOwner(ctx, o, limit+1)
		if err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		if n+adding[o] > limit {
			return &OwnerQueueFullError{Owner: o, Cap: limit, Queued: n, Adding: adding[o]}
		}
	}
	return nil
}
