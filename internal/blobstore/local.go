package blobstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The embedded store's objects are files named by their keys, so a few
// operations go to the filesystem directly instead of through fileblob,
// which also looks for an attributes sidecar beside every object it
// stats or lists (one failed open per object; the store writes none).

// statLocal is Stat of an object of the embedded store; false when key
// is not a plain file name there (fileblob answers then).
func (s *Store) statLocal(key string) (Attrs, bool, error) {
	p, ok := s.plainPath(key)
	if !ok {
		return Attrs{}, false, nil
	}
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) || err == nil && fi.IsDir() {
		return Attrs{}, true, ErrNotFound
	}
	if err != nil {
		return Attrs{}, true, fmt.Errorf("stat %s: %w", key, err)
	}
	return Attrs{Size: fi.Size()}, true, nil
}

// deleteExceptLocal is DeleteExcept in the embedded store when keep is
// one directory level below prefix ("tasks/T/" and "tasks/T/L/"): it
// removes every entry of prefix's directory but keep's, with one
// directory read instead of a walk of every object. It reports false
// when the keys do not have that shape (DeleteExcept lists then).
func (s *Store) deleteExceptLocal(prefix, keep string) (bool, error) {
	rest, ok := strings.CutPrefix(keep, prefix)
	if !ok || !strings.HasSuffix(prefix, "/") || !strings.HasSuffix(rest, "/") || strings.Count(rest, "/") != 1 {
		return false, nil
	}
	dir, ok := s.plainPath(strings.TrimSuffix(prefix, "/"))
	if !ok {
		return false, nil
	}
	keepName := strings.TrimSuffix(rest, "/")
	if _, ok := s.plainPath(keep + "x"); !ok || keepName == "" {
		return false, nil
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return true, fmt.Errorf("list %s: %w", prefix, err)
	}
	for _, e := range ents {
		if e.IsDir() && e.Name() == keepName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return true, fmt.Errorf("delete %s%s: %w", prefix, e.Name(), err)
		}
	}
	return true, nil
}
