package queue

import (
	"context"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/storetest"
	"github.com/google/uuid"
)

// suiteRules runs the task rules of this package in the shape the
// conformance suite calls them.
type suiteRules struct{}

func (suiteRules) TaskFail(ctx context.Context, s store.Store, p *storetest.TaskFailParams) (*core.Task, error) {
	delay := p.RetryAt.Sub(p.Now)
	return FailTask(ctx, s, &FailParams{
		Now: p.Now, WorkerID: p.WorkerID, Lease: p.Lease, Error: p.Error, Retryable: p.Retryable,
		Backoff: func(int) time.Duration { return max(delay, 0) },
	})
}

func (suiteRules) TaskRequeueLost(ctx context.Context, s store.Store, p *storetest.TaskRequeueLostParams) ([]*core.Task, error) {
	return RequeueLost(ctx, s, p.Now, p.WorkerIDs, p.ExpiredBefore)
}

func (suiteRules) TaskTimeoutRunning(ctx context.Context, s store.Store, now time.Time) ([]*core.Task, error) {
	return TimeoutRunning(ctx, s, now)
}

func (suiteRules) TaskCancel(ctx context.Context, s store.Store, id uuid.UUID, now time.Time) (*core.Task, error) {
	return CancelTask(ctx, s, id, now)
}

func (suiteRules) TaskRetry(ctx context.Context, s store.Store, id uuid.UUID, now time.Time) (*core.Task, error) {
	return RetryTask(ctx, s, id, now)
}

func (suiteRules) TaskExpireQueued(ctx context.Context, s store.Store, createdBefore, now time.Time) (int, error) {
	return ExpireQueued(ctx, s, createdBefore, now)
}

// The task rules hold on SQLite.
func TestRulesSQLite(t *testing.T) {
	t.Parallel()
	storetest.RunRules(t, openSQLite, suiteRules{})
}

// The task rules hold on PostgreSQL (DROVER_TEST_DATABASE_URL).
func TestRulesPostgres(t *testing.T) {
	t.Parallel()
	pgtest.URL(t)
	storetest.RunRules(t, func(t *testing.T) store.Store { return pgtest.Open(t, 8) }, suiteRules{})
}
