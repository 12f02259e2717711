package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/status"
)

// browser is a headless Chromium driven by chromedp, with the dialogs the
// pages opened recorded.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // screenshots

	mu      sync.Mutex
	dialogs []string
}

// chromiumPath is the browser binary: $DROVER_CHROMIUM, else Debian's
// chromium, else whatever chromedp finds.
func chromiumPath() string {
	if p := os.Getenv("DROVER_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// newBrowser starts the browser. When it cannot start, the test fails in
// CI (CI=true) and is skipped, loudly, elsewhere.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") == "true" {
			t.Fatalf("headless browser unavailable in CI: %s (install Debian's chromium: apt-get install -y chromium)", msg)
		}
		t.Skipf("SKIPPED: headless browser unavailable: %s; install Debian's chromium (apt-get install -y chromium) or set DROVER_CHROMIUM — CI fails here instead of skipping", msg)
	}
	path := chromiumPath()
	if path == "" {
		unavailable("no chromium binary found")
	}
	b := &browser{t: t}
	b.dir = os.Getenv("DROVER_TEST_ARTIFACTS")
	if b.dir == "" {
		b.dir = t.TempDir()
	} else {
		b.dir = filepath.Join(b.dir, "dashboard")
		if err := os.MkdirAll(b.dir, 0o755); err != nil {
			t.Fatalf("create artifacts dir: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(path), chromedp.WindowSize(1366, 900),
		chromedp.Flag("disable-gpu", true), chromedp.UserDataDir(t.TempDir())}
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to sandbox as root
	}
	bctx, bcancel := chromedp.NewContext(ctx, chromedp.WithAllocatorOptions(opts...),
		chromedp.WithListener(func(ev any) {
			if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
				b.mu.Lock()
				b.dialogs = append(b.dialogs, string(d.Type)+": "+d.Message)
				b.mu.Unlock()
			}
		}))
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil {
		unavailable("start %s: %v", path, err)
	}
	b.ctx = bctx
	t.Logf("browser %s; screenshots in %s", path, b.dir)
	return b
}

// discard runs a and drops its value.
func discard[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v (dialogs: %v)", what, err, b.openedDialogs())
	}
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// stopRefresh turns the page's live refresh off, so that the nodes a test
// clicks are not swapped between finding and clicking them.
func (b *browser) stopRefresh() {
	b.t.Helper()
	b.do("stop live refresh", chromedp.Evaluate[chromedp.Void](`delete document.getElementById("live").dataset.refresh; undefined`),
		discard(chromedp.Poll[bool](`document.getElementById("live-state").textContent === "live refresh off"`, chromedp.WithPollingTimeout(20*time.Second))))
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatalf("save screenshot: %v", err)
	}
}

func (b *browser) openedDialogs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.dialogs...)
}

// assertNoInjection checks the current page: no hostile script ran, no
// dialog opened, and no element the payloads would create exists.
func (b *browser) assertNoInjection(where string) {
	b.t.Helper()
	if n := eval[int](b, `window.__xss || 0`); n != 0 {
		b.t.Errorf("%s: injected script ran %d times", where, n)
	}
	if d := b.openedDialogs(); len(d) > 0 {
		b.t.Errorf("%s: dialogs opened: %v", where, d)
	}
	if n := eval[int](b, `document.querySelectorAll('img[src="x"], img[onerror], [onerror]').length`); n != 0 {
		b.t.Errorf("%s: %d injected elements in the DOM", where, n)
	}
	scripts := eval[[]string](b, `Array.from(document.scripts).map(s => s.src || "inline:" + s.textContent.slice(0, 40))`)
	if len(scripts) != 1 || !strings.HasSuffix(scripts[0], "/static/app.js") {
		b.t.Errorf("%s: scripts in the DOM: %q, want only /static/app.js", where, scripts)
	}
}

func TestBrowser(t *testing.T) {
	f := newFixture(t)
	b := newBrowser(t)
	base := f.srv.URL

	// Log in: any page first sends the browser to the login form.
	b.do("open the overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	if loc := eval[string](b, `location.pathname`); loc != "/login" {
		t.Fatalf("not logged in, the overview sent the browser to %s, want /login", loc)
	}
	b.screenshot("01-login")
	b.do("log in", chromedp.SendKeys(chromedp.ID("token"), testToken), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("verdict-word")))
	if u := eval[string](b, `location.href`); strings.Contains(u, testToken) {
		t.Fatalf("the token is in the URL %s", u)
	}
	if c := eval[string](b, `document.cookie`); c != "" {
		t.Fatalf("a script can read cookies %q; the session cookie must be HttpOnly", c)
	}

	// The verdict and numbers of status.
	want, err := status.Build(t.Context(), f.st, f.cfg, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := b.text("#verdict-word"); got != want.Verdict {
		t.Fatalf("verdict %q, want %q", got, want.Verdict)
	}
	if got := b.text("#verdict-reason"); got != want.Reason {
		t.Fatalf("verdict reason %q, want %q", got, want.Reason)
	}
	if got := b.text("#breakers"); !strings.Contains(got, "57.1") {
		t.Errorf("breakers on the overview lack the seed's 57.1 %%: %q", got)
	}
	// A chart, drawn as SVG.
	if n := eval[int](b, `document.querySelectorAll('#chart-queue svg polyline').length`); n == 0 {
		t.Fatal("the queue depth chart has no line")
	}
	for _, id := range []string{"chart-workers", "chart-throughput", "chart-spend"} {
		if n := eval[int](b, `document.querySelectorAll('#`+id+` svg').length`); n != 1 {
			t.Fatalf("chart %s: %d svg elements", id, n)
		}
	}
	b.assertNoInjection("overview")
	b.screenshot("02-overview")

	// Live refresh: the content is replaced without a page load.
	b.do("live refresh", chromedp.Evaluate[chromedp.Void](`window.__notReloaded = true; undefined`),
		discard(chromedp.Poll[bool](`!!document.getElementById("live").dataset.updated`, chromedp.WithPollingTimeout(20*time.Second))))
	if !eval[bool](b, `window.__notReloaded === true`) {
		t.Fatal("the page reloaded instead of refreshing its content")
	}
	b.stopRefresh()

	// Open a worker from the overview's worker table.
	sel := `#worker-table a[href="/workers/` + f.healthy.ID.String() + `"]`
	b.do("open the healthy worker", chromedp.Click(chromedp.CSS(sel)), chromedp.WaitVisible(chromedp.ID("gpus")))
	if got := b.text("#gpus"); !strings.Contains(got, "RTX 4090") || !strings.Contains(got, "87 %") {
		t.Fatalf("GPU metrics: %q", got)
	}
	if got := b.text("#logs"); !strings.Contains(got, "boom "+xssScript) {
		t.Fatalf("worker logs do not show the hostile line as text: %q", got)
	}
	b.assertNoInjection("worker page")
	b.screenshot("03-worker")

	// Hostile text renders as text on every page that shows it.
	b.do("open the hostile task", chromedp.Navigate(base+"/tasks/"+f.xssTask.ID.String()), chromedp.WaitVisible(chromedp.ID("task-error")))
	if got := b.text("#task-type"); got != xssScript {
		t.Errorf("task type shown as %q, want the text %q", got, xssScript)
	}
	if got := b.text("#task-owner"); got != xssImg {
		t.Errorf("task owner shown as %q, want the text %q", got, xssImg)
	}
	if got := b.text("#task-error"); got != "handler crashed: "+xssScript+xssImg {
		t.Errorf("task error shown as %q", got)
	}
	if got := b.text("#task-params"); !strings.Contains(got, `"prompt": "<script>window.__xss`) {
		t.Errorf("task params shown as %q", got)
	}
	b.assertNoInjection("task page")
	b.screenshot("04-task-xss")
	for _, p := range []string{"/tasks", "/tasks?state=failed", "/events", "/workers"} {
		b.do("open "+p, chromedp.Navigate(base+p), chromedp.WaitVisible(chromedp.CSS("main table")))
		b.assertNoInjection(p)
	}
	b.screenshot("05-tasks")

	// Reset the open breaker from the breakers page.
	b.do("open the breakers", chromedp.Navigate(base+"/breakers"), chromedp.WaitVisible(chromedp.ID("breaker-list")))
	row := `#breaker-list tr[data-key="` + f.openKey + `"]`
	if got := b.text(row); !strings.Contains(got, "open") {
		t.Fatalf("breaker row before reset: %q", got)
	}
	b.screenshot("06-breakers-open")
	b.stopRefresh()
	nav, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(row+` button.reset`)))
	if err != nil {
		t.Fatalf("reset the breaker: %v", err)
	}
	if nav.Status != 200 || !strings.HasSuffix(nav.URL, "/breakers") {
		t.Fatalf("after reset the browser is at %s (HTTP %d), want the breakers page", nav.URL, nav.Status)
	}
	b.do("see the breakers", chromedp.WaitVisible(chromedp.ID("breaker-list")))
	if got := b.text(row); !strings.Contains(got, "closed") {
		t.Fatalf("breaker row after reset: %q", got)
	}
	if got := f.breakerState(t, f.openKey); got != core.BreakerClosed {
		t.Fatalf("after reset in the browser the breaker is %s, want closed", got)
	}
	b.screenshot("07-breakers-reset")

	// Open it again with a reason typed in the row (hostile, shown as text).
	b.stopRefresh()
	reason := "maintenance " + xssImg
	b.do("type a reason", chromedp.SendKeys(chromedp.CSS(row+` input[name="reason"]`), reason))
	nav, err = chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(row+` button.open`)))
	if err != nil {
		t.Fatalf("open the breaker: %v", err)
	}
	if nav.Status != 200 {
		t.Fatalf("after open: HTTP %d", nav.Status)
	}
	b.do("see the breakers", chromedp.WaitVisible(chromedp.ID("breaker-list")))
	if got := f.breakerState(t, f.openKey); got != core.BreakerOpen {
		t.Fatalf("after open in the browser the breaker is %s, want open", got)
	}
	if got := b.text(row); !strings.Contains(got, reason) {
		t.Fatalf("breaker row after open does not show the reason as text: %q", got)
	}
	b.assertNoInjection("breakers page")
	b.screenshot("08-breakers-reopened")

	// A bad query parameter is a 400 page.
	resp, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(base+"/tasks?state=bogus"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 400 {
		t.Fatalf("bad query: HTTP %d, want 400", resp.Status)
	}
	if got := b.text(".message"); !strings.Contains(got, "parameter state") {
		t.Fatalf("400 page says %q", got)
	}
	b.screenshot("09-bad-query")
	if d := b.openedDialogs(); len(d) > 0 {
		t.Fatalf("dialogs opened during the test: %v", d)
	}
}

// TestBrowserUnavailable runs TestBrowser again, in a child process, with a
// browser that cannot start: with CI=true it must fail, elsewhere it must
// skip and say so.
func TestBrowserUnavailable(t *testing.T) {
	if os.Getenv("DROVER_BROWSER_CHILD") != "" {
		t.Skip("child process")
	}
	for _, tc := range []struct {
		ci       string
		wantFail bool
		wantText string
	}{
		{"true", true, "headless browser unavailable in CI"},
		{"", false, "SKIPPED: headless browser unavailable"},
	} {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestBrowser$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "CI="+tc.ci, "DROVER_CHROMIUM="+filepath.Join(t.TempDir(), "no-such-chromium"), "DROVER_BROWSER_CHILD=1")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		failed := errors.As(err, &ee)
		if err != nil && !failed {
			t.Fatalf("run child: %v", err)
		}
		if failed != tc.wantFail || !strings.Contains(string(out), tc.wantText) {
			t.Fatalf("CI=%q: failed=%v, want %v, and output with %q:\n%s", tc.ci, failed, tc.wantFail, tc.wantText, out)
		}
	}
}
