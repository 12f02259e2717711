package dashboard_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/dashboard"
)

var csrfRe = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// client is a browser-like HTTP client: a cookie jar, no redirects
// followed.
type client struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newClient(t *testing.T, base string) *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (c *client) do(method, path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, string(b)
}

func (c *client) get(path string) (*http.Response, string) { return c.do(http.MethodGet, path, nil) }

func (c *client) post(path string, form url.Values) (*http.Response, string) {
	return c.do(http.MethodPost, path, form)
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", page)
	}
	return m[1]
}

// login logs c in and returns the session's CSRF token.
func (c *client) login() string {
	c.t.Helper()
	_, page := c.get("/login")
	resp, body := c.post("/login", url.Values{"csrf": {csrfOf(c.t, page)}, "token": {testToken}, "next": {"/"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		c.t.Fatalf("login: status %d location %q, want 303 to /\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	_, page = c.get("/")
	return csrfOf(c.t, page)
}

func wantStatus(t *testing.T, what string, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d\n%s", what, resp.StatusCode, want, body)
	}
}

func TestLoginFlow(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.srv.URL)

	resp, body := c.get("/workers?state=ready")
	wantStatus(t, "page before login", resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/login?next="+url.QueryEscape("/workers?state=ready") {
		t.Fatalf("redirect to %q", loc)
	}
	resp, body = c.get("/?partial=1")
	wantStatus(t, "fragment before login", resp, body, http.StatusUnauthorized)

	resp, page := c.get("/login")
	wantStatus(t, "login page", resp, page, http.StatusOK)
	if strings.Contains(page, `action="/logout"`) || strings.Contains(page, `href="/workers"`) {
		t.Fatal("the login page shows the navigation of a logged-in operator")
	}
	tok := csrfOf(t, page)

	resp, body = c.post("/login", url.Values{"token": {testToken}})
	wantStatus(t, "login without CSRF", resp, body, http.StatusForbidden)
	resp, body = c.post("/login", url.Values{"csrf": {strings.Repeat("0", 64)}, "token": {testToken}})
	wantStatus(t, "login with a wrong CSRF token", resp, body, http.StatusForbidden)
	resp, body = c.post("/login", url.Values{"csrf": {tok}, "token": {"wrong"}})
	wantStatus(t, "login with a wrong token", resp, body, http.StatusUnauthorized)
	if strings.Contains(body, testToken) || !strings.Contains(body, "not the operator token") {
		t.Fatalf("wrong-token page:\n%s", body)
	}
	tok = csrfOf(t, body)
	resp, body = c.post("/login", url.Values{"csrf": {tok}, "token": {testToken}, "next": {"//evil.example/"}})
	wantStatus(t, "login", resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/" {
		t.Fatalf("login redirected to %q, want / (an off-site next is ignored)", loc)
	}
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "drover_session" {
			sess = ck
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/", sess)
	}
	if strings.Contains(sess.Value, testToken) {
		t.Fatal("the session cookie holds the operator token")
	}
	resp, body = c.get("/")
	wantStatus(t, "overview", resp, body, http.StatusOK)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}

	// Log out: the cookie is cleared and pages redirect again.
	resp, body = c.post("/logout", url.Values{"csrf": {csrfOf(t, body)}})
	wantStatus(t, "logout", resp, body, http.StatusSeeOther)
	resp, body = c.get("/")
	wantStatus(t, "overview after logout", resp, body, http.StatusSeeOther)
}

func TestPagesRender(t *testing.T) {
	onBothBackends(t, testPagesRender)
}

func testPagesRender(t *testing.T, f *fixture) {
	c := newClient(t, f.srv.URL)
	c.login()
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/", []string{`id="verdict-word"`, "57.1", "HEALTHY", "INITIALIZING", `id="chart-queue"`, `id="chart-workers"`, `id="chart-throughput"`, `id="chart-spend"`, "<polyline", "boot-timeout"}},
		{"/?range=24h", []string{`<a class="on" href="/?range=24h">`}},
		{"/workers", []string{f.healthy.ID.String(), "ready", "booting"}},
		{"/workers?state=all&pool=gpu&limit=10", []string{f.healthy.ID.String()}},
		{"/workers/" + f.healthy.ID.String(), []string{"NVIDIA GeForce RTX 4090", "87 %", "64 °C", "agent started", "worker ready"}},
		{"/tasks", []string{f.xssTask.ID.String(), "carol"}},
		{"/tasks?state=failed&pool=gpu", []string{f.xssTask.ID.String()}},
		{"/tasks?owner=carol&limit=1", []string{"carol"}},
		{"/tasks/" + f.xssTask.ID.String(), []string{`id="task-error"`, `id="task-params"`, "attempt 1 of 1"}},
		{"/breakers", []string{f.openKey, "open", "blocking", `action="/breakers/reset"`}},
		{"/events", []string{"worker.failed", "boot-timeout after 330s"}},
		{"/events?kind=worker.failed&limit=2", []string{"Older events"}},
	} {
		resp, body := c.get(tc.path)
		wantStatus(t, tc.path, resp, body, http.StatusOK)
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: page lacks %q", tc.path, w)
			}
		}
		// Hostile text is always escaped.
		if strings.Contains(body, "<script>window") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s: hostile text rendered unescaped", tc.path)
		}
	}
	// The live-refresh fragment is the page's content only.
	resp, body := c.get("/?partial=1")
	wantStatus(t, "fragment", resp, body, http.StatusOK)
	if strings.Contains(body, "<html") || !strings.Contains(body, `id="verdict-word"`) {
		t.Fatalf("fragment:\n%s", body)
	}
}

func TestBadQueryIs400(t *testing.T) {
	onBothBackends(t, testBadQueryIs400)
}

func testBadQueryIs400(t *testing.T, f *fixture) {
	c := newClient(t, f.srv.URL)
	c.login()
	for path, want := range map[string]string{
		"/tasks?state=bogus":                             "parameter state",
		"/tasks?limit=0":                                 "parameter limit",
		"/tasks?limit=abc":                               "parameter limit",
		"/tasks?before=not-a-uuid":                       "parameter before",
		"/tasks?owner=" + strings.Repeat("x", 200):       "parameter owner",
		"/tasks?color=red":                               `unknown parameter &#34;color&#34;`,
		"/tasks?state=queued&state=running":              "given 2 times",
		"/workers?state=sleeping":                        "parameter state",
		"/workers?limit=100000":                          "parameter limit",
		"/workers/123":                                   "bad worker id",
		"/tasks/xyz":                                     "bad task id",
		"/events?before=-4":                              "parameter before",
		"/events?kind=%3Cscript%3E":                      "parameter kind",
		"/events?worker=abc":                             "parameter worker",
		"/?range=7d":                                     "parameter range",
		"/?partial=yes":                                  "partial",
		"/breakers?x=1":                                  "unknown parameter",
		"/workers/" + f.healthy.ID.String() + "?after=x": "parameter after",
	} {
		resp, body := c.get(path)
		wantStatus(t, path, resp, body, http.StatusBadRequest)
		if !strings.Contains(body, want) {
			t.Errorf("%s: 400 page does not say %q:\n%s", path, want, body)
		}
		if strings.Contains(body, "<script>") {
			t.Errorf("%s: 400 page echoes markup", path)
		}
	}
	for _, path := range []string{"/workers/" + f.xssTask.ID.String(), "/tasks/" + f.healthy.ID.String(), "/nope"} {
		resp, body := c.get(path)
		wantStatus(t, path, resp, body, http.StatusNotFound)
	}
}

func TestPostNeedsSessionAndCSRF(t *testing.T) {
	onBothBackends(t, testPostNeedsSessionAndCSRF)
}

func testPostNeedsSessionAndCSRF(t *testing.T, f *fixture) {
	anon := newClient(t, f.srv.URL)
	c := newClient(t, f.srv.URL)
	csrf := c.login()
	other := newClient(t, f.srv.URL)
	otherCSRF := other.login()
	if otherCSRF == csrf {
		t.Fatal("two sessions share a CSRF token")
	}
	for _, tc := range []struct {
		name string
		c    *client
		form url.Values
	}{
		{"no session", anon, url.Values{"key": {f.openKey}, "csrf": {csrf}}},
		{"no CSRF token", c, url.Values{"key": {f.openKey}}},
		{"wrong CSRF token", c, url.Values{"key": {f.openKey}, "csrf": {strings.Repeat("a", 64)}}},
		{"another session's CSRF token", c, url.Values{"key": {f.openKey}, "csrf": {otherCSRF}}},
	} {
		resp, body := tc.c.post("/breakers/reset", tc.form)
		wantStatus(t, "reset with "+tc.name, resp, body, http.StatusForbidden)
		if got := f.breakerState(t, f.openKey); got != core.BreakerOpen {
			t.Fatalf("reset with %s changed the breaker to %s", tc.name, got)
		}
	}
	resp, body := c.post("/breakers/reset", url.Values{"key": {f.openKey}, "csrf": {csrf}})
	wantStatus(t, "reset", resp, body, http.StatusSeeOther)
	if got := f.breakerState(t, f.openKey); got != core.BreakerClosed {
		t.Fatalf("after reset the breaker is %s, want closed", got)
	}
	resp, body = c.post("/breakers/open", url.Values{"key": {f.openKey}, "csrf": {csrf}, "reason": {"maintenance"}})
	wantStatus(t, "open", resp, body, http.StatusSeeOther)
	if got := f.breakerState(t, f.openKey); got != core.BreakerOpen {
		t.Fatalf("after open the breaker is %s, want open", got)
	}
	resp, body = c.post("/breakers/open", url.Values{"key": {f.openKey}, "csrf": {csrf}, "reason": {strings.Repeat("r", 300)}})
	wantStatus(t, "open with a long reason", resp, body, http.StatusBadRequest)
	resp, body = c.post("/breakers/reset", url.Values{"key": {"gpu/nope/nowhere"}, "csrf": {csrf}})
	wantStatus(t, "reset of an unknown key", resp, body, http.StatusNotFound)
	resp, body = c.post("/breakers/reset", url.Values{"csrf": {csrf}})
	wantStatus(t, "reset without a key", resp, body, http.StatusBadRequest)
}

func TestDisabledWithoutOperatorToken(t *testing.T) {
	f := newFixture(t)
	h, err := dashboard.New(dashboard.Config{Store: f.st, Clock: f.clock, Fleet: f.cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := newClient(t, srv.URL)
	resp, body := c.get("/login")
	wantStatus(t, "login page", resp, body, http.StatusOK)
	if !strings.Contains(body, "disabled") {
		t.Fatalf("login page does not say the dashboard is disabled:\n%s", body)
	}
	resp, body = c.post("/login", url.Values{"token": {""}})
	wantStatus(t, "login", resp, body, http.StatusForbidden)
	resp, body = c.get("/")
	wantStatus(t, "overview", resp, body, http.StatusSeeOther)
}
