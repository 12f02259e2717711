package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The embedded store writes an upload as an unnamed file in the object's
// directory (O_TMPFILE) and links it into place once complete: one
// directory update per object instead of the two of fileblob's writer
// (create a temporary name, rename it), which is most of what an upload
// of a small file costs, and an interrupted upload leaves nothing behind,
// not even a temporary file. The object is the same file fileblob's
// writer would have made, so fileblob reads, lists and deletes it. Where
// the directory's filesystem cannot (or the platform is not Linux), Put
// goes through fileblob's writer.

// unnamedOK reports whether dir's filesystem takes unnamed files and
// links them, by linking one to a probe name and removing it.
func unnamedOK(dir string) bool {
	f, err := createUnnamed(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	probe := filepath.Join(dir, ".drover-probe-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := linkUnnamed(f, probe); err != nil {
		return false
	}
	return os.Remove(probe) == nil
}

// localPath returns the file of key in the embedded store when Put
// writes it as an unnamed file; false otherwise (keys then go through
// fileblob's writer).
func (s *Store) localPath(key string) (string, bool) {
	if !s.unnamed {
		return "", false
	}
	return s.plainPath(key)
}

// plainPath returns the file of key in the embedded store, where it is
// the key itself; false for other stores and for keys that fileblob
// would escape or refuse.
func (s *Store) plainPath(key string) (string, bool) {
	if !s.embedded || key == "" || !filepath.IsLocal(key) || strings.Contains(key, "__") ||
		strings.Contains(key, "//") || strings.HasSuffix(key, "/") || strings.HasSuffix(key, ".attrs") ||
		strings.ContainsFunc(key, func(r rune) bool { return r < 32 || r == '\\' }) {
		return "", false
	}
	return filepath.Join(s.url, filepath.FromSlash(key)), true
}

// putUnnamed is Put into an unnamed file linked at path once complete.
func putUnnamed(ctx context.Context, path string, r io.Reader, limit int64) (Written, error) {
	dir := filepath.Dir(path)
	f, err := createUnnamed(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o777); err == nil {
			f, err = createUnnamed(dir)
		}
	}
	if err != nil {
		return Written{}, fmt.Errorf("create %s: %w", path, err)
	}
	defer f.Close() // an unlinked file vanishes here
	wr, err := copySummed(f, r, limit)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return wr, fmt.Errorf("write %s: %w", path, err)
	}
	if err := linkUnnamed(f, path); err != nil {
		if !errors.Is(err, os.ErrExist) {
			return wr, fmt.Errorf("write %s: %w", path, err)
		}
		// A second upload of the key (a retry whose first answer was
		// lost) replaces the object, as fileblob's rename would.
		tmp := path + "." + strconv.FormatInt(time.Now().UnixNano(), 16) + ".tmp"
		if err := linkUnnamed(f, tmp); err != nil {
			return wr, fmt.Errorf("write %s: %w", path, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			_ = os.Remove(tmp)
			return wr, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return wr, nil
}
