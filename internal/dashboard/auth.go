package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	sessionCookie = "drover_session"
	loginCookie   = "drover_login"
)

// auth issues and checks session cookies and CSRF tokens. Everything is
// derived from a key computed from the operator token, so any replica can
// check a cookie another issued, and a new operator token ends every
// session. The token itself is never stored in a cookie.
type auth struct {
	tokenHash []byte // sha256 of the operator token; nil = disabled
	key       []byte
	ttl       time.Duration
}

func newAuth(operatorToken string, ttl time.Duration) *auth {
	a := &auth{ttl: ttl}
	if operatorToken == "" {
		return a
	}
	sum := sha256.Sum256([]byte(operatorToken))
	a.tokenHash = sum[:]
	m := hmac.New(sha256.New, []byte(operatorToken))
	m.Write([]byte("drover dashboard session key v1"))
	a.key = m.Sum(nil)
	return a
}

func (a *auth) enabled() bool { return a.tokenHash != nil }

func (a *auth) mac(parts ...string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(m.Sum(nil))
}

// checkToken compares a submitted token with the operator token in
// constant time.
func (a *auth) checkToken(tok string) bool {
	if !a.enabled() {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], a.tokenHash) == 1
}

// session is a verified session cookie.
type session struct {
	nonce string
}

// newSession returns the cookie value of a fresh session: expiry, nonce
// and a MAC over both.
func (a *auth) newSession(now time.Time) string {
	exp := strconv.FormatInt(now.Add(a.ttl).Unix(), 10)
	nonce := randomHex()
	return exp + "." + nonce + "." + a.mac("session", exp, nonce)
}

// session reads and verifies the session cookie of r.
func (a *auth) session(r *http.Request, now time.Time) (session, bool) {
	if !a.enabled() {
		return session{}, false
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return session{}, false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(a.mac("session", parts[0], parts[1]))) {
		return session{}, false
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || !now.Before(time.Unix(exp, 0)) {
		return session{}, false
	}
	return session{nonce: parts[1]}, true
}

// csrfFor is the CSRF token of a session: a MAC over its nonce.
func (a *auth) csrfFor(s session) string { return a.mac("csrf", s.nonce) }

func (a *auth) checkCSRF(s session, tok string) bool {
	return tok != "" && hmac.Equal([]byte(tok), []byte(a.csrfFor(s)))
}

// loginCSRF is the CSRF token of the login form, bound to the pre-login
// cookie's nonce.
func (a *auth) loginCSRF(nonce string) string { return a.mac("login", nonce) }

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int(maxAge / time.Second)}
	if maxAge < 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// safeNext keeps a post-login target only when it is a path on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.HasPrefix(next, "/login") || len(next) > 512 {
		return url.QueryEscape("/")
	}
	return url.QueryEscape(next)
}

func nextTarget(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.HasPrefix(next, "/login") || len(next) > 512 {
		return "/"
	}
	return next
}

func (h *Handler) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	v := &view{Title: "Log in", Now: h.clock.Now().UTC(), Disabled: !h.auth.enabled(), Next: nextTarget(r.URL.Query().Get("next"))}
	for k := range r.URL.Query() {
		if k != "next" {
			h.renderError(w, r, http.StatusBadRequest, "unknown parameter "+strconv.Quote(truncate(k, 32))+" (the login page takes only next)")
			return
		}
	}
	if h.auth.enabled() {
		nonce := randomHex()
		setCookie(w, r, loginCookie, nonce, 30*time.Minute)
		v.CSRF = h.auth.loginCSRF(nonce)
	}
	h.render(w, r, http.StatusOK, "login", v)
}

func (h *Handler) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if !h.auth.enabled() {
		h.renderError(w, r, http.StatusForbidden, "the dashboard is disabled: no operator token is configured (auth.operator_token)")
		return
	}
	if err := r.ParseForm(); err != nil {
		h.renderError(w, r, http.StatusBadRequest, "the form could not be read")
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(h.auth.loginCSRF(c.Value))) {
		h.renderError(w, r, http.StatusForbidden, "missing or invalid CSRF token: open the login page again")
		return
	}
	next := nextTarget(r.PostForm.Get("next"))
	if !h.auth.checkToken(r.PostForm.Get("token")) {
		h.log.WarnContext(r.Context(), "dashboard login refused", slog.String("remote", r.RemoteAddr))
		nonce := randomHex()
		setCookie(w, r, loginCookie, nonce, 30*time.Minute)
		v := &view{Title: "Log in", Now: h.clock.Now().UTC(), CSRF: h.auth.loginCSRF(nonce), Next: next,
			Message: "That is not the operator token."}
		h.render(w, r, http.StatusUnauthorized, "login", v)
		return
	}
	setCookie(w, r, loginCookie, "", -1)
	setCookie(w, r, sessionCookie, h.auth.newSession(h.clock.Now()), h.auth.ttl)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) handleLogout(w http.ResponseWriter, r *http.Request) {
	setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
