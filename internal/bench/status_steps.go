package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// stepStore times each store read status.Build makes (the real store does
// the work), so the benchmark says which read grows with the tables.
type stepStore struct {
	store.Store
	now   func() time.Time
	mu    sync.Mutex
	times map[string][]time.Duration
}

func newStepStore(st store.Store, now func() time.Time) *stepStore {
	return &stepStore{Store: st, now: now, times: map[string][]time.Duration{}}
}

// steps returns the p50 of each read, by name.
func (s *stepStore) steps() map[string]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]time.Duration{}
	for name, ds := range s.times {
		out[name] = tickPercentile(ds, 50)
	}
	return out
}

func timeStep[T any](s *stepStore, name string, fn func() (T, error)) (T, error) {
	t0 := s.now()
	v, err := fn()
	d := s.now().Sub(t0)
	s.mu.Lock()
	s.times[name] = append(s.times[name], d)
	s.mu.Unlock()
	return v, err
}

func (s *stepStore) TaskDemand(ctx context.Context, p *store.TaskDemandParams) (map[string]store.PoolDemand, error) {
	return timeStep(s, "TaskDemand", func() (map[string]store.PoolDemand, error) { return s.Store.TaskDemand(ctx, p) })
}

func (s *stepStore) TaskFinishedCount(ctx context.Context, since, until time.Time) (int, int, error) {
	var failed int
	ok, err := timeStep(s, "TaskFinishedCount", func() (int, error) {
		ok, f, err := s.Store.TaskFinishedCount(ctx, since, until)
		failed = f
		return ok, err
	})
	return ok, failed, err
}

func (s *stepStore) TaskOldestReady(ctx context.Context, now time.Time) (*time.Time, error) {
	return timeStep(s, "TaskOldestReady", func() (*time.Time, error) { return s.Store.TaskOldestReady(ctx, now) })
}

func (s *stepStore) TaskRunningByOwner(ctx context.Context, atLeast int) (map[string]int, error) {
	return timeStep(s, "TaskRunningByOwner", func() (map[string]int, error) { return s.Store.TaskRunningByOwner(ctx, atLeast) })
}

func (s *stepStore) WorkerGroups(ctx context.Context, staleBefore time.Time) ([]*store.WorkerGroup, error) {
	return timeStep(s, "WorkerGroups", func() ([]*store.WorkerGroup, error) { return s.Store.WorkerGroups(ctx, staleBefore) })
}

func (s *stepStore) WorkerAttentionIDs(ctx context.Context, staleBefore time.Time, limit int) ([]uuid.UUID, error) {
	return timeStep(s, "WorkerAttentionIDs", func() ([]uuid.UUID, error) { return s.Store.WorkerAttentionIDs(ctx, staleBefore, limit) })
}

func (s *stepStore) WorkerList(ctx context.Context, p *store.WorkerListParams) ([]*core.Worker, error) {
	return timeStep(s, "WorkerList", func() ([]*core.Worker, error) { return s.Store.WorkerList(ctx, p) })
}

func (s *stepStore) WorkerStarts(ctx context.Context, since, until time.Time, limit int) ([]*store.WorkerStart, error) {
	return timeStep(s, "WorkerStarts", func() ([]*store.WorkerStart, error) { return s.Store.WorkerStarts(ctx, since, until, limit) })
}

func (s *stepStore) WorkerSpend(ctx context.Context, since, until time.Time) (map[string]float64, error) {
	return timeStep(s, "WorkerSpend", func() (map[string]float64, error) { return s.Store.WorkerSpend(ctx, since, until) })
}

func (s *stepStore) BreakerGetAll(ctx context.Context) ([]*core.BreakerState, error) {
	return timeStep(s, "BreakerGetAll", func() ([]*core.BreakerState, error) { return s.Store.BreakerGetAll(ctx) })
}

func (s *stepStore) EventList(ctx context.Context, p *store.EventListParams) ([]*core.Event, error) {
	name := "EventList"
	if len(p.Kinds) > 0 {
		kinds := make([]string, len(p.Kinds))
		for i, k := range p.Kinds {
			kinds[i] = string(k)
		}
		name += "(" + strings.Join(kinds, ",") + ")"
	}
	return timeStep(s, name, func() ([]*core.Event, error) { return s.Store.EventList(ctx, p) })
}

func (s *stepStore) EventRecent(ctx context.Context, kinds []core.EventKind, since time.Time, limit int) ([]*core.Event, error) {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = string(k)
	}
	return timeStep(s, "EventRecent("+strings.Join(names, ",")+")", func() ([]*core.Event, error) { return s.Store.EventRecent(ctx, kinds, since, limit) })
}

// LeaderGet passes the leadership row through when the store keeps one.
func (s *stepStore) LeaderGet(ctx context.Context) (*store.Leader, error) {
	lr, ok := s.Store.(store.LeaderReader)
	if !ok {
		return nil, core.ErrNotFound
	}
	return timeStep(s, "LeaderGet", func() (*store.Leader, error) { return lr.LeaderGet(ctx) })
}

// printSteps writes the p50 of each read, slowest first.
func printSteps(w io.Writer, steps map[string]time.Duration) {
	names := slices.SortedFunc(maps.Keys(steps), func(a, b string) int {
		return cmp.Or(cmp.Compare(steps[b], steps[a]), strings.Compare(a, b))
	})
	for _, n := range names {
		fmt.Fprintf(w, "  %-40s p50 %s\n", n, fmtDur(steps[n]))
	}
}
