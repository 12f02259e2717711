// Package dashboard is Drover's web dashboard, served on the API port at /.
//
// Pages are rendered on the server with html/template from embedded
// templates and assets (no build step, no CDN, no external font): overview
// (the verdict and numbers of `drover status`, with charts), workers, one
// worker (events, logs, GPU metrics), tasks (filtered and paged), one task
// (params, result or error, attempts, logs, events), breakers (reset and
// open for operators) and events. Charts are SVG drawn on the server from
// the fleet's time-series samples. Pages refresh themselves by fetching
// their own content fragment (?partial=1) every few seconds.
//
// Access: the operator token, entered once on /login, is exchanged for a
// session cookie (HttpOnly, SameSite=Strict, Secure under TLS). The cookie
// is signed with a key derived from the operator token, so it is valid on
// every replica and changing the token logs every session out; a token
// never appears in a URL. Every POST carries a CSRF token bound to the
// session (the login form one bound to a pre-login cookie); a POST without
// a valid session or CSRF token is answered 403 and changes nothing. Query
// parameters are validated strictly: a bad or unknown one is a 400 page
// naming it. See docs/dashboard.md.
package dashboard
