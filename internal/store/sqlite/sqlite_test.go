package sqlite_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/droverhq/drover/internal/store/storetest"
)

func openTemp(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "drover.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := openTemp(t)
		if _, err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		return s
	})
}

func TestMigrateTwiceAppliesNothing(t *testing.T) {
	s := openTemp(t)
	first, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if !slices.Contains(first, "0001_init") {
		t.Fatalf("first Migrate applied %v, want 0001_init among them", first)
	}
	second, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	if len(second) != 0 {
		t.Fatalf("second Migrate applied %v, want nothing", second)
	}
}

func TestOpenRejectsMemory(t *testing.T) {
	if _, err := sqlite.Open(t.Context(), ":memory:"); err == nil {
		t.Fatalf("Open(:memory:) succeeded, want an error")
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drover.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	tasks := storetest.InsertN(t, s, 3)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	applied, err := s.Migrate(t.Context())
	if err != nil || len(applied) != 0 {
		t.Fatalf("Migrate after reopen = %v, %v; want nothing applied", applied, err)
	}
	got := storetest.Get(t, s, tasks[2].ID)
	if got.ID != tasks[2].ID || !got.CreatedAt.Equal(tasks[2].CreatedAt) {
		t.Fatalf("reopened task = %+v, want %+v", got, tasks[2])
	}
}
