package agent

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/google/uuid"
)

// carryServer is fakeServer with the claim that carries completions: it
// records them, answers the leases in stale as lost, and claims like
// fakeServer.Claim.
type carryServer struct {
	*fakeServer
	carried chan wire.CompleteItem
	stale   map[uuid.UUID]bool
	// hold makes a claim that carries completions wait until it is cut
	// short, recording nothing.
	hold bool
	// answered, if set, receives the id of every carried completion once
	// the claim carrying it has returned (its outcome is then settled).
	answered chan uuid.UUID
}

func (c *carryServer) ClaimComplete(ctx context.Context, id uuid.UUID, max int, wait time.Duration, items []wire.CompleteItem) ([]wire.ClaimedTask, []wire.Lease, error) {
	if c.hold && len(items) > 0 {
		for _, it := range items {
			c.carried <- it
		}
		<-ctx.Done()
		return nil, nil, ctx.Err()
	}
	var lost []wire.Lease
	c.mu.Lock()
	for _, it := range items {
		if c.stale[it.TaskID] {
			lost = append(lost, wire.Lease{TaskID: it.TaskID, Token: it.LeaseToken})
		} else {
			c.completed[it.TaskID] = it.Result
		}
	}
	c.mu.Unlock()
	for _, it := range items {
		c.carried <- it
	}
	tasks, err := c.Claim(ctx, id, max, wait)
	if c.answered != nil {
		for _, it := range items {
			c.answered <- it.TaskID
		}
	}
	return tasks, lost, err
}

// A one-slot agent reports each finished task on its next claim, not with
// a completion request of its own; a carried completion whose lease is
// stale is dropped like a 409 and the agent goes on working.
func TestAgentCarriesCompletionOnClaim(t *testing.T) {
	f := newFakeServer()
	first, second, third := task("echo", `{"n":1}`), task("echo", `{"n":2}`), task("echo", `{"n":3}`)
	c := &carryServer{fakeServer: f, carried: make(chan wire.CompleteItem, 10), stale: map[uuid.UUID]bool{second.ID: true},
		answered: make(chan uuid.UUID, 10)}
	a, done := startCarryAgent(t, c)
	for _, want := range []wire.ClaimedTask{first, second, third} {
		f.claims <- want
		select {
		case got := <-c.carried:
			if got.TaskID != want.ID || got.LeaseToken != want.LeaseToken {
				t.Fatalf("carried %s/%s, want %s/%s", got.TaskID, got.LeaseToken, want.ID, want.LeaseToken)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("task %s never carried by a claim", want.ID)
		}
	}
	// The last claim long-polls (fakeServer: 100 ms) before the third
	// task's report ends; a drain cutting it short would send that
	// completion again on its own (its outcome unknown), so wait until
	// the claim carrying it has returned.
	for id := uuid.Nil; id != third.ID; {
		select {
		case id = <-c.answered:
		case <-time.After(20 * time.Second):
			t.Fatal("the claim carrying the last task never returned")
		}
	}
	a.Drain()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if string(f.completed[first.ID]) != `{"echo":{"n":1}}` || string(f.completed[third.ID]) != `{"echo":{"n":3}}` {
		t.Fatalf("completed %v", f.completed)
	}
	if _, ok := f.completed[second.ID]; ok {
		t.Fatal("the stale carried completion was recorded")
	}
	select {
	case id := <-f.reported:
		t.Fatalf("task %s was also reported with its own request", id)
	default:
	}
}

// A drain that cuts the claim carrying a completion short leaves its
// outcome unknown: the task reports on its own request, and the agent exits.
func TestAgentCarriedCompletionCutByDrain(t *testing.T) {
	f := newFakeServer()
	c := &carryServer{fakeServer: f, carried: make(chan wire.CompleteItem, 10), hold: true}
	a, done := startCarryAgent(t, c)
	tk := task("echo", `{"n":1}`)
	f.claims <- tk
	select {
	case <-c.carried:
	case <-time.After(20 * time.Second):
		t.Fatal("the completion was never carried by a claim")
	}
	a.Drain()
	waitReported(t, f, tk.ID)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if string(f.completed[tk.ID]) != `{"echo":{"n":1}}` {
		t.Fatalf("completed %v", f.completed)
	}
}

// startCarryAgent runs a one-slot agent against c until the test ends.
func startCarryAgent(t *testing.T, c *carryServer) (*Agent, <-chan error) {
	t.Helper()
	a := New(c, Options{
		WorkerID:    uuid.New(),
		Concurrency: 1,
		Runner:      &Runner{Command: handlerScript, KillGrace: 2 * time.Second, TempDir: t.TempDir()},
		GPU:         StaticGPUs{{Index: 0, Name: "Test GPU", MemoryMiB: 1024}},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		RetryMin:    time.Millisecond, RetryMax: 5 * time.Millisecond,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return a, done
}
