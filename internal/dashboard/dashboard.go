package dashboard

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/status"
	"github.com/droverhq/drover/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config wires a dashboard.
type Config struct {
	// Store is read for the lists and detail pages.
	Store store.Store
	// Clock is the only source of time (default core.SystemClock).
	Clock core.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OperatorToken is the token that logs in. Empty disables the
	// dashboard: every page says so and nothing can be changed.
	OperatorToken string
	// Fleet is the configuration the status report is computed against
	// (breaker numbers, timeouts, pool limits, spend caps).
	Fleet *config.Config
	// Breakers resets and opens breakers (the code the API's breaker routes
	// use); the buttons are hidden when nil.
	Breakers BreakerControl
	// Refresh is how often pages refresh themselves (default 5s).
	Refresh time.Duration
	// SessionTTL is how long a login lasts (default 12h).
	SessionTTL time.Duration
}

// BreakerControl changes breakers on an operator's request: the code
// behind the API's POST /v1/breakers/{action} (server.Surface).
type BreakerControl interface {
	// BreakerSet applies action "reset" (close the breaker and forget its
	// window) or "open" (trip it at once with reason) to the breaker of
	// key. An unknown key is a core.Error with code ENOTFOUND.
	BreakerSet(ctx context.Context, key, action, reason string) (*status.Breaker, error)
}

// Handler serves the dashboard. Build it with New.
type Handler struct {
	cfg    Config
	st     store.Store
	clock  core.Clock
	log    *slog.Logger
	auth   *auth
	pages  map[string]*template.Template
	mux    *http.ServeMux
	static http.Handler
}

// New builds the dashboard handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.Fleet == nil {
		return nil, errors.New("dashboard: Store and Fleet are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = core.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 5 * time.Second
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	h := &Handler{cfg: cfg, st: cfg.Store, clock: cfg.Clock, log: cfg.Logger,
		auth: newAuth(cfg.OperatorToken, cfg.SessionTTL), pages: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/eventtable.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: parse template %s: %w", name, err)
		}
		h.pages[name] = t
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: static assets: %w", err)
	}
	h.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	h.mux = h.routes()
	return h, nil
}

var pageNames = []string{"login", "overview", "workers", "worker", "tasks", "task", "breakers", "events", "error"}

func (h *Handler) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.static.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /login", h.handleLoginPage)
	mux.HandleFunc("POST /login", h.handleLogin)
	mux.HandleFunc("POST /logout", h.post(h.handleLogout))
	mux.HandleFunc("GET /{$}", h.page(h.handleOverview))
	mux.HandleFunc("GET /workers", h.page(h.handleWorkers))
	mux.HandleFunc("GET /workers/{id}", h.page(h.handleWorker))
	mux.HandleFunc("GET /tasks", h.page(h.handleTasks))
	mux.HandleFunc("GET /tasks/{id}", h.page(h.handleTask))
	mux.HandleFunc("GET /breakers", h.page(h.handleBreakers))
	mux.HandleFunc("POST /breakers/reset", h.post(h.handleBreakerReset))
	mux.HandleFunc("POST /breakers/open", h.post(h.handleBreakerOpen))
	mux.HandleFunc("GET /events", h.page(h.handleEvents))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.renderError(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here")
			return
		}
		h.renderError(w, r, http.StatusNotFound, "no page at "+r.URL.Path)
	})
	return mux
}

// ServeHTTP serves every dashboard route with the security headers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	h.mux.ServeHTTP(w, r)
}

// pageFunc builds the data of one page; an error of type *pageError picks
// the status of the error page.
type pageFunc func(r *http.Request, v *view) (name string, err error)

// view is what every template gets.
type view struct {
	Title string
	Nav   string
	Now   time.Time
	CSRF  string
	// LoggedIn shows the navigation and the log-out button.
	LoggedIn bool
	Refresh  int // seconds; 0 = no live refresh
	Partial  bool
	// CanControl shows the breaker buttons.
	CanControl bool
	Data       any
	// Error page fields.
	Status  int
	Message string
	// Login page fields.
	Disabled bool
	Next     string
}

// pageError is an error that picks its page status.
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &pageError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &pageError{status: http.StatusNotFound, msg: fmt.Sprintf(format, args...)}
}

// page wraps a GET page: it requires a session and renders the page (or
// only its content with ?partial=1, for live refresh).
func (h *Handler) page(fn pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := h.auth.session(r, h.clock.Now())
		if !ok {
			if r.URL.Query().Get("partial") != "" {
				h.renderError(w, r, http.StatusUnauthorized, "the session has ended: log in again")
				return
			}
			http.Redirect(w, r, "/login?next="+safeNext(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		v := &view{Now: h.clock.Now().UTC(), CSRF: h.auth.csrfFor(sess), LoggedIn: true, Refresh: int(h.cfg.Refresh / time.Second),
			CanControl: h.cfg.Breakers != nil}
		q := r.URL.Query()
		switch q.Get("partial") {
		case "":
		case "1":
			v.Partial = true
		default:
			h.renderError(w, r, http.StatusBadRequest, `bad parameter partial: want 1`)
			return
		}
		name, err := fn(r, v)
		if err != nil {
			var pe *pageError
			if errors.As(err, &pe) {
				h.renderError(w, r, pe.status, pe.msg)
				return
			}
			h.log.ErrorContext(r.Context(), "dashboard page failed", slog.String("path", r.URL.Path), slog.Any("err", err))
			h.renderError(w, r, http.StatusInternalServerError, "the page could not be built; the server log has the details")
			return
		}
		h.render(w, r, http.StatusOK, name, v)
	}
}

// post wraps a state-changing form: it requires a session and the session's
// CSRF token, else 403 before anything runs.
func (h *Handler) post(fn func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		sess, ok := h.auth.session(r, h.clock.Now())
		if !ok {
			h.renderError(w, r, http.StatusForbidden, "not logged in: log in with the operator token first")
			return
		}
		if err := r.ParseForm(); err != nil {
			h.renderError(w, r, http.StatusBadRequest, "the form could not be read")
			return
		}
		if !h.auth.checkCSRF(sess, r.PostForm.Get("csrf")) {
			h.renderError(w, r, http.StatusForbidden, "missing or invalid CSRF token: reload the page and try again")
			return
		}
		fn(w, r)
	}
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, v *view) {
	t := h.pages[name]
	entry := "layout"
	if v.Partial {
		entry = "content"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, entry, v); err != nil {
		h.log.ErrorContext(r.Context(), "dashboard render failed", slog.String("page", name), slog.Any("err", err))
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (h *Handler) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	v := &view{Title: http.StatusText(status), Now: h.clock.Now().UTC(), Status: status, Message: msg,
		Partial: r.URL.Query().Get("partial") == "1"}
	if sess, ok := h.auth.session(r, h.clock.Now()); ok {
		v.CSRF, v.LoggedIn = h.auth.csrfFor(sess), true
	}
	h.render(w, r, status, "error", v)
}
