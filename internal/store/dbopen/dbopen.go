// Package dbopen opens a store.Store from a database URL, choosing the
// backend by scheme. It is the one place that knows both backends, so the
// commands and the server stay backend-agnostic.
package dbopen

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/droverhq/drover/internal/redact"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres"
	"github.com/droverhq/drover/internal/store/sqlite"
)

// DefaultURL is the database used when none is configured: a SQLite file in
// the working directory.
const DefaultURL = "sqlite://drover.db"

// Open opens the store named by rawURL and, when migrate is true, applies
// pending migrations. Accepted forms:
//
//	sqlite://PATH          a SQLite file (sqlite:///abs/path for an absolute path)
//	PATH                   a bare file path is SQLite too
//	postgres://…           PostgreSQL (postgresql:// also works)
//
// Errors name the URL with any password masked.
func Open(ctx context.Context, rawURL string, migrate bool) (store.Store, error) {
	backend, target, err := Parse(rawURL)
	if err != nil {
		return nil, err
	}
	var st store.Store
	switch backend {
	case "sqlite":
		s, err := sqlite.Open(ctx, target)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", Redact(rawURL), scrub(err, rawURL))
		}
		st = s
	case "postgres":
		s, err := postgres.Open(ctx, target)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", Redact(rawURL), scrub(err, rawURL))
		}
		st = s
	}
	if migrate {
		if _, err := st.Migrate(ctx); err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("migrate %s: %w", Redact(rawURL), scrub(err, rawURL))
		}
	}
	return st, nil
}

// Parse returns the backend ("sqlite" or "postgres") and what to pass to
// its Open: the file path for SQLite, the URL itself for PostgreSQL.
func Parse(rawURL string) (backend, target string, err error) {
	switch {
	case rawURL == "":
		return "", "", fmt.Errorf("database URL is empty; use sqlite://PATH or postgres://USER@HOST/DB")
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		if _, err := url.Parse(rawURL); err != nil {
			return "", "", fmt.Errorf("database URL %s is not a valid URL", Redact(rawURL))
		}
		return "postgres", rawURL, nil
	case strings.HasPrefix(rawURL, "sqlite://"):
		path := strings.TrimPrefix(rawURL, "sqlite://")
		if path == "" {
			return "", "", fmt.Errorf("database URL %s names no file; use sqlite://PATH", rawURL)
		}
		return "sqlite", path, nil
	case strings.HasPrefix(rawURL, "sqlite:"):
		return "", "", fmt.Errorf("database URL %s: use sqlite://PATH", Redact(rawURL))
	case strings.Contains(rawURL, "://"):
		scheme, _, _ := strings.Cut(rawURL, "://")
		return "", "", fmt.Errorf("database URL %s: unknown scheme %q; use sqlite://PATH or postgres://USER@HOST/DB", Redact(rawURL), scheme)
	default:
		return "sqlite", rawURL, nil
	}
}

// Redact returns rawURL with every credential masked (user:PASSWORD@,
// password= and sslpassword= in a URL or a key/value DSN), for logs and
// error messages. It is redact.DatabaseURL.
func Redact(rawURL string) string {
	return redact.DatabaseURL(rawURL)
}

// scrub removes the credentials of rawURL from a backend error's text, in
// case a driver echoes the connection string.
func scrub(err error, rawURL string) error {
	msg := err.Error()
	if masked := redact.Text(msg, rawURL); masked != msg {
		return fmt.Errorf("%s", masked)
	}
	return err
}
