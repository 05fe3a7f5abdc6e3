// Package tty tells whether output goes to a terminal, for the command-line
// tools' progress lines (which must not end up in a pipe or a file).
package tty

import (
	"io"
	"os"
)

// Is reports whether w is a terminal: an *os.File on a character device.
// No golang.org/x/term dependency for one question.
func Is(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
