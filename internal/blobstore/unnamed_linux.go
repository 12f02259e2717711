//go:build linux

package blobstore

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// createUnnamed creates an unnamed regular file in dir (O_TMPFILE): it
// has no directory entry until linkUnnamed gives it one, and vanishes
// if the process dies first.
func createUnnamed(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o666)
	if err != nil {
		return nil, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// linkUnnamed gives the unnamed file f the name path (os.ErrExist if path
// exists). Linking through /proc/self/fd needs no privilege, unlike
// AT_EMPTY_PATH.
func linkUnnamed(f *os.File, path string) error {
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: path, Err: err}
	}
	return nil
}
