package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestEmbeddedPut: an upload to the embedded store is an object only once
// complete (an over-long or cancelled upload leaves no file at all, not
// even a temporary one), a second upload of the key replaces it, and
// keys fileblob escapes still work.
func TestEmbeddedPut(t *testing.T) {
	for _, unnamed := range []bool{true, false} {
		t.Run(map[bool]string{true: "unnamed", false: "fileblob"}[unnamed], func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(t.Context(), dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if unnamed && !s.unnamed {
				// Not every filesystem takes O_TMPFILE (overlayfs before
				// Linux 6.6): Put then uses fileblob's writer, tested here.
				t.Logf("%s (%s): no unnamed files; testing fileblob's writer", dir, runtime.GOOS)
			}
			s.unnamed = s.unnamed && unnamed
			testEmbeddedPut(t, s, dir)
		})
	}
}

func testEmbeddedPut(t *testing.T, s *Store, dir string) {
	put := func(ctx context.Context, key, body string, limit int64) error {
		wr, err := s.Put(ctx, key, "text/plain", strings.NewReader(body), limit)
		if err != nil {
			return err
		}
		h := sha256.Sum256([]byte(body))
		if wr.N != int64(len(body)) || wr.SHA256 != hex.EncodeToString(h[:]) || wr.CRC32C != CRC32C([]byte(body)) {
			t.Fatalf("Put(%s) = %+v; want %d, %x, CRC32C %08x", key, wr, len(body), h, CRC32C([]byte(body)))
		}
		return nil
	}
	read := func(key string) string {
		r, a, err := s.Open(t.Context(), key)
		if err != nil {
			t.Fatalf("open %s: %v", key, err)
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil || a.Size != int64(len(b)) {
			t.Fatalf("read %s: %d bytes of %d, %v", key, len(b), a.Size, err)
		}
		return string(b)
	}
	for _, key := range []string{"tasks/a/b/out.txt", "tasks/a/b/odd__0x2f__name", "tasks/a/b/x.attrs.txt"} {
		if err := put(t.Context(), key, "first", 100); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		if err := put(t.Context(), key, "second, longer", 100); err != nil {
			t.Fatalf("put %s again: %v", key, err)
		}
		if got := read(key); got != "second, longer" {
			t.Fatalf("%s = %q after the second upload", key, got)
		}
	}
	if err := put(t.Context(), "tasks/a/c/big.bin", "0123456789", 5); err == nil || !strings.Contains(err.Error(), "more than 5 bytes") {
		t.Fatalf("over-long upload: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := put(ctx, "tasks/a/c/cancelled.bin", "abc", 5); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled upload: %v", err)
	}
	for _, key := range []string{"tasks/a/c/big.bin", "tasks/a/c/cancelled.bin"} {
		if _, err := s.Stat(t.Context(), key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stat %s after a failed upload: %v", key, err)
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "tasks", "a", "c"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("failed uploads left %d files: %v", len(ents), ents[0].Name())
	}
	var buf bytes.Buffer
	ents, _ = os.ReadDir(filepath.Join(dir, "tasks", "a", "b"))
	for _, e := range ents {
		buf.WriteString(e.Name() + " ")
	}
	if len(ents) != 3 {
		t.Fatalf("directory holds %s; want the 3 objects only", buf.String())
	}
}
