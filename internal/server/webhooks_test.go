package server_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/server"
	"github.com/droverhq/drover/internal/webhook"
)

// A bad callback_url is a 400 naming the field; a good one gets a signed
// delivery, under the secret of the server's webhook secret file, once the
// task is final.
func TestSubmitCallbackURL(t *testing.T) {
	s, c, clock := newServer(t)
	ctx := t.Context()

	for _, bad := range []string{"ftp://example.com/hook", "not a url", "https://example.com/" + strings.Repeat("x", 2048)} {
		_, err := c.Submit(ctx, &wire.SubmitRequest{Type: "render", CallbackURL: bad})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || ce.Field != "callback_url" {
			t.Fatalf("callback_url %.30q: %v, want a 400 naming callback_url", bad, err)
		}
	}

	var (
		mu     sync.Mutex
		bodies [][]byte
		sigs   []string
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, sigs = append(bodies, b), append(sigs, r.Header.Get(webhook.SignatureHeader))
		mu.Unlock()
	}))
	defer rcv.Close()
	res, err := c.Submit(ctx, &wire.SubmitRequest{Type: "render", CallbackURL: rcv.URL + "/done"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cancel(ctx, res.Task.ID); err != nil {
		t.Fatal(err)
	}
	if s.Webhooks == nil {
		t.Fatal("no webhook dispatcher")
	}
	if n, err := s.Webhooks.Step(ctx); err != nil || n != 1 {
		t.Fatalf("Step = %d, %v; want one attempt", n, err)
	}
	secret, err := server.ReadToken(s.Config.WebhookSecretFile())
	if err != nil || secret == "" {
		t.Fatalf("webhook secret file: %q, %v", secret, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 {
		t.Fatalf("deliveries = %d, want 1", len(bodies))
	}
	if err := webhook.Verify([]byte(secret), sigs[0], bodies[0], clock.Now(), 0); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if !strings.Contains(string(bodies[0]), `"state":"cancelled"`) {
		t.Fatalf("body %s", bodies[0])
	}
}
