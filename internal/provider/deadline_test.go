package provider_test

import (
	"context"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/provider"
)

// hung is a provider whose Create blocks until released, ignoring its
// context, as a cloud API that never answers.
type hung struct {
	provider.Provider
	release chan struct{}
}

func (h *hung) Name() string { return "hung" }

func (h *hung) Create(context.Context, *provider.CreateRequest) (*provider.Instance, error) {
	<-h.release
	return &provider.Instance{ID: "late"}, nil
}

// prompt is a provider whose Create waits for its context and then says
// what it knows: the create may have happened.
type prompt struct{ provider.Provider }

func (prompt) Name() string { return "prompt" }

func (prompt) Create(ctx context.Context, _ *provider.CreateRequest) (*provider.Instance, error) {
	<-ctx.Done()
	return nil, &provider.Error{Op: "create", Kind: provider.KindTransient, MaybeCreated: true, Message: "outcome unknown"}
}

func TestDeadlineOnAHungCreate(t *testing.T) {
	h := &hung{release: make(chan struct{})}
	defer close(h.release)
	_, err := provider.WithDeadline(h, 10*time.Millisecond).Create(t.Context(), &provider.CreateRequest{WorkerID: "w1"})
	if provider.KindOf(err) != provider.KindTransient || provider.MaybeCreated(err) {
		t.Fatalf("create past its deadline: %v, want the deadline's own transient error", err)
	}
}

func TestDeadlineKeepsTheAnswerGivenOnTheContextsEnd(t *testing.T) {
	_, err := provider.WithDeadline(prompt{}, 10*time.Millisecond).Create(t.Context(), &provider.CreateRequest{WorkerID: "w1"})
	if !provider.MaybeCreated(err) {
		t.Fatalf("create that answered on its context's end: %v, want its own error (MaybeCreated)", err)
	}
}
