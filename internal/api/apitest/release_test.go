package apitest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
)

// gatedQueue holds every ClaimMany until the test lets it proceed.
type gatedQueue struct {
	*queue.Service
	entered chan struct{}
	proceed chan struct{}
}

func (g *gatedQueue) ClaimMany(ctx context.Context, reqs []queue.ClaimRequest) ([][]*core.Task, error) {
	g.entered <- struct{}{}
	<-g.proceed
	return g.Service.ClaimMany(ctx, reqs)
}

// A claim granted while its agent goes away (a drain cuts the long poll)
// reaches nobody: the server hands the task back to the queue at once, with
// nothing counted, instead of leaving it running until its lease expires.
func TestClaimGrantedToAGoneAgentIsReleased(t *testing.T) {
	gate := &gatedQueue{entered: make(chan struct{}, 1), proceed: make(chan struct{})}
	claimCtx := make(chan context.Context, 1)
	b := setupWith(t, func(q *queue.Service) api.Queue { gate.Service = q; return gate },
		func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/claim") {
					claimCtx <- r.Context()
				}
				next.ServeHTTP(w, r)
			})
		})
	w := b.addWorker(t, core.DefaultPool)
	task := b.submit(t, "render")

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := w.c.Claim(ctx, w.id, 1, 10*time.Second)
		errc <- err
	}()
	serverCtx := <-claimCtx
	<-gate.entered // the dispatcher is claiming for this agent
	cancel()       // the agent goes away mid-claim
	<-serverCtx.Done()
	close(gate.proceed)
	if err := <-errc; err == nil {
		t.Fatal("the cancelled claim returned no error")
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := b.q.Get(t.Context(), task.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == core.TaskQueued {
			if got.Attempt != 0 || got.Lost != 0 || got.WorkerID != nil {
				t.Fatalf("released task: attempt %d lost %d worker %v, want a clean queued task", got.Attempt, got.Lost, got.WorkerID)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task is %s (worker %v) 10s after its claimer went away, want queued", got.State, got.WorkerID)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-t.Context().Done():
			return
		}
	}
}
