// Package redact masks the credentials of a database connection string
// before it is printed, logged or put in an error. It knows every form the
// PostgreSQL driver (pgx) accepts: a URL with user:PASSWORD@ or a password=
// or sslpassword= query parameter, and a key/value DSN (host=… password=…
// sslpassword=…, values bare or in single quotes). It is the one masking
// function for database URLs: every command and package uses it.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces a credential.
const Mask = "xxxxx"

// secretKeys are the connection parameters that hold credentials.
var secretKeys = `password|sslpassword`

var (
	// queryParam matches a credential in a URL query: ?password=… or
	// &sslpassword=… up to the next & or #.
	queryParam = regexp.MustCompile(`(?i)([?&](?:` + secretKeys + `)=)([^&#]*)`)
	// dsnParam matches a credential in a key/value DSN: password=… up to
	// the next space, or a single-quoted value with \' and \\ escapes.
	dsnParam = regexp.MustCompile(`(?i)((?:^|\s)(?:` + secretKeys + `)\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s']\S*)`)
)

// DatabaseURL returns s with every credential masked. Strings without
// credentials (sqlite://drover.db, postgres://u@h/db) come back unchanged.
func DatabaseURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		return maskURL(s, i)
	}
	return dsnParam.ReplaceAllString(s, "${1}"+Mask)
}

// maskURL masks the userinfo password and the credential query parameters
// of a URL whose scheme ends at i. It works on the text (not url.Parse), so
// that a URL too broken to parse is masked the same way and the rest of the
// URL keeps its exact spelling.
func maskURL(s string, i int) string {
	head, rest := s[:i+3], s[i+3:]
	// The authority ends at the first '/', '?' or '#' after the last '@'
	// of the part before the query; a password may hold '/', '?' or '#'
	// only percent-encoded, but be lenient: take the last '@' before any
	// query parameter.
	end := len(rest)
	if q := strings.IndexAny(rest, "?#"); q >= 0 {
		end = q
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		if c := strings.Index(rest[:at], ":"); c >= 0 {
			rest = rest[:c+1] + Mask + rest[at:]
		}
	}
	return head + queryParam.ReplaceAllString(rest, "${1}"+Mask)
}

// Secrets returns the credential values found in the connection string s
// (as written, unescaped where quoted), for scrubbing them out of a
// driver's error text.
func Secrets(s string) []string {
	var out []string
	add := func(v string) {
		if v != "" && v != Mask {
			out = append(out, v)
		}
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		end := len(rest)
		if q := strings.IndexAny(rest, "?#"); q >= 0 {
			end = q
		}
		if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
			if c := strings.Index(rest[:at], ":"); c >= 0 {
				add(rest[c+1 : at])
				add(unescape(rest[c+1 : at]))
			}
		}
		for _, m := range queryParam.FindAllStringSubmatch(rest, -1) {
			add(m[2])
			add(unescape(m[2]))
		}
		return out
	}
	for _, m := range dsnParam.FindAllStringSubmatch(s, -1) {
		v := m[2]
		if strings.HasPrefix(v, "'") {
			v = strings.TrimSuffix(strings.TrimPrefix(v, "'"), "'")
			v = strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(v)
		}
		add(v)
	}
	return out
}

// Text returns text with every credential of the connection string dbURL
// masked, for errors from drivers that echo the connection string.
func Text(text, dbURL string) string {
	for _, secret := range Secrets(dbURL) {
		text = strings.ReplaceAll(text, secret, Mask)
	}
	return text
}

// unescape decodes %XX escapes; it returns s unchanged when s holds a
// malformed escape.
func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}
