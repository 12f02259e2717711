package blobstore

import (
	"errors"
	"strings"
	"testing"
)

// TestEmbeddedStatAndDeleteExcept: the embedded store's Stat reports an
// object's size and ErrNotFound for a missing key or a directory, and
// DeleteExcept removes every other attempt's objects under a task while
// keeping the named attempt's, in the directory-level shape and in any
// other.
func TestEmbeddedStatAndDeleteExcept(t *testing.T) {
	s, err := Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := []string{"tasks/T/L1/a.txt", "tasks/T/L1/b.txt", "tasks/T/L2/a.txt", "tasks/T/L3/odd__name", "tasks/U/L1/a.txt"}
	for _, k := range keys {
		if _, err := s.Put(t.Context(), k, "text/plain", strings.NewReader(k), 100); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	if a, err := s.Stat(t.Context(), "tasks/T/L1/a.txt"); err != nil || a.Size != int64(len("tasks/T/L1/a.txt")) {
		t.Fatalf("stat = %+v, %v", a, err)
	}
	for _, k := range []string{"tasks/T/L1/none", "tasks/T/L1"} {
		if _, err := s.Stat(t.Context(), k); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stat %s: %v, want ErrNotFound", k, err)
		}
	}
	if err := s.DeleteExcept(t.Context(), "tasks/T/", "tasks/T/L2/"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteExcept(t.Context(), "tasks/none/", "tasks/none/L/"); err != nil {
		t.Fatalf("delete under a missing prefix: %v", err)
	}
	if err := s.DeleteExcept(t.Context(), "tasks/U/", "tasks/U/L1/a"); err != nil { // not the directory shape
		t.Fatal(err)
	}
	want := map[string]bool{"tasks/T/L2/a.txt": true, "tasks/U/L1/a.txt": true}
	for _, k := range keys {
		_, err := s.Stat(t.Context(), k)
		if want[k] && err != nil || !want[k] && !errors.Is(err, ErrNotFound) {
			t.Errorf("after DeleteExcept, stat %s: %v (want kept: %v)", k, err, want[k])
		}
	}
}
