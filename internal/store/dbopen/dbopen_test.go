package dbopen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/store/postgres/pgtest"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, backend, target, err string
	}{
		{in: "sqlite://drover.db", backend: "sqlite", target: "drover.db"},
		{in: "sqlite:///var/lib/drover.db", backend: "sqlite", target: "/var/lib/drover.db"},
		{in: "./data/drover.db", backend: "sqlite", target: "./data/drover.db"},
		{in: "postgres://u@h/db", backend: "postgres", target: "postgres://u@h/db"},
		{in: "postgresql://u:pw@h:5432/db?sslmode=disable", backend: "postgres", target: "postgresql://u:pw@h:5432/db?sslmode=disable"},
		{in: "", err: "database URL is empty"},
		{in: "sqlite://", err: "names no file"},
		{in: "sqlite::memory:", err: "use sqlite://PATH"},
		{in: "mysql://root:hunter2@h/db", err: `unknown scheme "mysql"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			backend, target, err := Parse(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse(%q) error = %v, want containing %q", tt.in, err, tt.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error leaks the password: %v", err)
				}
				return
			}
			if err != nil || backend != tt.backend || target != tt.target {
				t.Fatalf("Parse(%q) = %q, %q, %v; want %q, %q", tt.in, backend, target, err, tt.backend, tt.target)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"postgres://drover:s3cret@db:5432/drover":          "postgres://drover:xxxxx@db:5432/drover",
		"postgres://drover@db/drover?sslmode=disable":      "postgres://drover@db/drover?sslmode=disable",
		"postgres://db/drover?password=s3cret&user=drover": "postgres://db/drover?password=xxxxx&user=drover",
		"postgres://drover:s3cret@db:bad port/x":           "postgres://drover:xxxxx@db:bad port/x",
		"sqlite://drover.db":                               "sqlite://drover.db",
		"drover.db":                                        "drover.db",
	}
	for in, want := range tests {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "d.db")
	st, err := Open(t.Context(), "sqlite://"+path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Backend() != "sqlite" {
		t.Fatalf("Backend() = %q", st.Backend())
	}
	applied, err := st.Migrate(t.Context())
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, %v; want nothing", applied, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file: %v", err)
	}
}

func TestOpenPostgres(t *testing.T) {
	t.Parallel()
	base := pgtest.URL(t)
	dsn := pgtest.WithParams(t, base, map[string]string{"search_path": pgtest.NewSchema(t, base)})
	st, err := Open(t.Context(), dsn, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Backend() != "postgres" {
		t.Fatalf("Backend() = %q", st.Backend())
	}
}

func TestOpenErrorMasksPassword(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback refuses connections at once.
	_, err := Open(t.Context(), "postgres://drover:hunter2@127.0.0.1:1/drover?sslmode=disable&connect_timeout=2", false)
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
	if !strings.Contains(err.Error(), "drover:xxxxx@127.0.0.1:1") {
		t.Fatalf("error does not name the (masked) URL: %v", err)
	}
}
