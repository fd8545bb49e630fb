//go:build !linux

package main

import "os"

// fileIsTerminal reports whether f is a character device, an approximation
// of a terminal (/dev/null is one too) where the command is not built with
// a terminal check of its own.
func fileIsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
