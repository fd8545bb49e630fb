//go:build !unix

package main

import (
	"io/fs"
	"os"
)

// lockFile does nothing where flock is missing: one process per data
// directory is then the operator's to ensure.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) error { return nil }

func describeOwner(st fs.FileInfo) string { return "mode " + st.Mode().String() }
