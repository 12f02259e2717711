package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/server"
	"github.com/droverhq/drover/internal/store"
)

// TestDashboardMounted runs a whole server on loopback and checks that the
// dashboard answers at / beside the API, and that its breaker buttons
// change the stored breaker and record an event.
func TestDashboardMounted(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Database = "sqlite://" + filepath.Join(dir, "drover.db")
	cfg.Providers.Local.Dir = filepath.Join(dir, "agents")
	cfg.Auth.OperatorToken = "operator-token-for-the-dashboard-test"
	cfg.Pools[core.DefaultPool].Candidates = []config.CandidateConfig{{GPU: "cpu", Regions: []string{"here"}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(t.Context(), cfg, server.Options{Listener: ln, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server stopped with: %v", err)
		}
	})

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, form url.Values) (*http.Response, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	expect := func(what string, resp *http.Response, body string, status int, contentType string) {
		t.Helper()
		if resp.StatusCode != status || !strings.HasPrefix(resp.Header.Get("Content-Type"), contentType) {
			t.Fatalf("%s: %d %s, want %d %s\n%s", what, resp.StatusCode, resp.Header.Get("Content-Type"), status, contentType, body)
		}
	}

	resp, body := do("GET", "/", nil)
	expect("dashboard before login", resp, body, http.StatusSeeOther, "")
	resp, body = do("GET", "/v1/tasks", nil)
	expect("API without a token", resp, body, http.StatusUnauthorized, "application/json")
	resp, body = do("GET", "/v1/nope", nil)
	expect("unknown API route", resp, body, http.StatusNotFound, "application/json")
	resp, body = do("GET", "/healthz", nil)
	expect("healthz", resp, body, http.StatusOK, "application/json")

	resp, body = do("GET", "/login", nil)
	expect("login page", resp, body, http.StatusOK, "text/html")
	csrfRe := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on the login page:\n%s", body)
	}
	resp, body = do("POST", "/login", url.Values{"csrf": {m[1]}, "token": {cfg.Auth.OperatorToken}})
	expect("login", resp, body, http.StatusSeeOther, "")
	resp, body = do("GET", "/", nil)
	expect("overview", resp, body, http.StatusOK, "text/html")
	if !strings.Contains(body, `id="verdict-word"`) {
		t.Fatalf("overview without a verdict:\n%s", body)
	}
	csrf := csrfRe.FindStringSubmatch(body)[1]

	key := core.DefaultPool + "/cpu/here"
	state := func() core.BreakerStatus {
		all, err := srv.Store.BreakerGetAll(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range all {
			if b.Key == key {
				return b.Status
			}
		}
		return core.BreakerClosed
	}
	resp, body = do("POST", "/breakers/open", url.Values{"key": {key}, "reason": {"maintenance"}})
	expect("open without CSRF", resp, body, http.StatusForbidden, "text/html")
	if got := state(); got != core.BreakerClosed {
		t.Fatalf("a refused open changed the breaker to %s", got)
	}
	resp, body = do("POST", "/breakers/open", url.Values{"key": {key}, "reason": {"maintenance"}, "csrf": {csrf}})
	expect("open", resp, body, http.StatusSeeOther, "")
	if got := state(); got != core.BreakerOpen {
		t.Fatalf("after open the breaker is %s", got)
	}
	resp, body = do("POST", "/breakers/reset", url.Values{"key": {key}, "csrf": {csrf}})
	expect("reset", resp, body, http.StatusSeeOther, "")
	if got := state(); got != core.BreakerClosed {
		t.Fatalf("after reset the breaker is %s", got)
	}
	evs, err := srv.Store.EventList(t.Context(), &store.EventListParams{Kinds: []core.EventKind{core.EventBreakerState}})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range evs {
		msgs = append(msgs, e.Message)
	}
	if joined := strings.Join(msgs, "\n"); !strings.Contains(joined, "closed→open") || !strings.Contains(joined, "reset by an operator") {
		t.Fatalf("breaker events: %q", msgs)
	}
	resp, body = do("POST", "/breakers/reset", url.Values{"key": {"default/none/nowhere"}, "csrf": {csrf}})
	expect("reset of an unknown key", resp, body, http.StatusNotFound, "text/html")
}
