package orchestrator

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/provider"
	"github.com/droverhq/drover/internal/queue"
)

// hangingCreate is a provider whose Create never answers and ignores its
// context, like a cloud API that accepted the connection and went silent.
type hangingCreate struct {
	provider.Provider
	release chan struct{}
}

func (h *hangingCreate) Create(context.Context, *provider.CreateRequest) (*provider.Instance, error) {
	<-h.release
	return nil, provider.NewError("create", provider.KindTransient, "released at the end of the test")
}

// A Create that hangs past providers.*.call_timeout does not stall the
// tick: the tick finishes, the attempt is recorded as a transient provider
// failure, and the next tick runs.
func TestHungCreateCostsOneCallTimeout(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	// The pool's provider is the hanging one, under the local provider's
	// call_timeout.
	h.cfg.Pools["default"].Provider = "local"
	d := config.Duration(150 * time.Millisecond)
	h.cfg.Providers.Local.CallTimeout = &d
	hang := &hangingCreate{Provider: h.prov, release: make(chan struct{})}
	defer close(hang.release)
	o, err := New(Deps{Store: h.st, Queue: h.q, Providers: map[string]provider.Provider{"local": hang},
		Clock: h.clock, Config: h.cfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.q.Submit(h.ctx, []queue.SubmitRequest{{Type: "render"}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan *TickReport, 1)
	go func() {
		rep, err := o.Tick(h.ctx)
		if err != nil {
			t.Errorf("tick: %v", err)
		}
		done <- rep
	}()
	var rep *TickReport
	select {
	case rep = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("tick still blocked on a hung Create 30 s after a 150 ms call_timeout")
	}
	if len(rep.Spawned) != 0 {
		t.Fatalf("spawned %v from a Create that never answered", rep.Spawned)
	}
	var got core.FailureClass
	for _, c := range rep.Failed {
		got = c
	}
	if got != core.FailProvider {
		t.Fatalf("failed workers %v, want one with class %s (transient)", rep.Failed, core.FailProvider)
	}
	found := false
	for _, b := range rep.Blocked {
		if strings.Contains(b, "call_timeout") {
			found = true
		}
	}
	if !found {
		t.Fatalf("blocked reasons %q do not name the call_timeout", rep.Blocked)
	}
}
