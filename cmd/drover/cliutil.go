package main

import (
	"fmt"
	"io"
	"os"
)

// checkLimit rejects a --limit outside 1..max before anything is sent (the
// client would otherwise drop a 0 and the server apply its default).
func checkLimit(command string, limit, max int) error {
	if limit < 1 || limit > max {
		return fmt.Errorf("%s: --limit %d: must be between 1 and %d", command, limit, max)
	}
	return nil
}

// isTerminal reports whether w is a terminal (a character device), where
// a status line may be rewritten in place with \r and an erase sequence.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
