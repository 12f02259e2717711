package provider_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/provider"
)

// hung is a provider whose calls block until released, ignoring their
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

func (h *hung) List(context.Context) ([]*provider.Instance, error) {
	<-h.release
	return nil, nil
}

func TestDeadlineMarksAnUnansweredCreateMaybeCreated(t *testing.T) {
	h := &hung{release: make(chan struct{})}
	defer close(h.release)
	p := provider.WithDeadline(h, 10*time.Millisecond)

	_, err := p.Create(t.Context(), &provider.CreateRequest{WorkerID: "w1"})
	if !provider.MaybeCreated(err) || provider.KindOf(err) != provider.KindTransient {
		t.Fatalf("create past its deadline: %v (maybe created %v), want a transient error marked MaybeCreated", err, provider.MaybeCreated(err))
	}
	_, err = p.List(t.Context())
	if err == nil || provider.MaybeCreated(err) {
		t.Fatalf("list past its deadline: %v, want an error not marked MaybeCreated", err)
	}
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Op != "list" {
		t.Fatalf("list error %v: want a provider.Error for op list", err)
	}
}
