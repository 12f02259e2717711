// Package pgtest gives tests a PostgreSQL store of their own: a fresh schema
// in the database named by DROVER_TEST_DATABASE_URL, migrated, and dropped
// when the test ends, so tests sharing one database never see each other's
// rows.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/store/postgres"
	"github.com/jackc/pgx/v5"
)

// EnvURL is the variable that names the test database.
const EnvURL = "DROVER_TEST_DATABASE_URL"

// URL returns DROVER_TEST_DATABASE_URL. In CI (CI=true) a missing URL fails
// the test: PostgreSQL coverage must never silently disappear. Elsewhere the
// test is skipped with a loud message.
func URL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(EnvURL + " is not set but CI=true: PostgreSQL must be tested in CI (.ci/run sets it)")
	}
	t.Skip("SKIPPING POSTGRESQL TESTS: set " + EnvURL + "=postgres://postgres@127.0.0.1:5432/<db>?sslmode=disable to run them")
	return ""
}

// WithParams returns u with extra query parameters (pgx passes unknown ones,
// such as search_path, to the server as runtime parameters).
func WithParams(t testing.TB, u string, params map[string]string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil || (parsed.Scheme != "postgres" && parsed.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL", EnvURL)
	}
	q := parsed.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	parsed.RawQuery = q.Encode()
	return parsed.String()
}

// NewSchema creates a fresh schema in the database at base and drops it
// (CASCADE) when the test ends.
func NewSchema(t testing.TB, base string) string {
	t.Helper()
	ctx := context.Background()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "drover_test_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("connect to drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// OpenAt opens a migrated store in a fresh schema of the database at base,
// with at most maxConns connections (0: the store's default).
func OpenAt(t testing.TB, base string, maxConns int) *postgres.Store {
	t.Helper()
	params := map[string]string{"search_path": NewSchema(t, base)}
	if maxConns > 0 {
		params["pool_max_conns"] = strconv.Itoa(maxConns)
	}
	s, err := postgres.Open(context.Background(), WithParams(t, base, params))
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	applied, err := s.Migrate(context.Background())
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if len(applied) == 0 {
		t.Fatalf("migrate on an empty schema applied nothing")
	}
	return s
}

// Open is OpenAt on URL(t): it fails in CI and skips loudly elsewhere when
// no test database is configured.
func Open(t testing.TB, maxConns int) *postgres.Store {
	t.Helper()
	return OpenAt(t, URL(t), maxConns)
}
