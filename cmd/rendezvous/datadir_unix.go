//go:build unix

package main

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on f without waiting.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// describeOwner says who owns a file and its mode: "owned by uid 0, gid 0,
// mode drwxr-xr-x".
func describeOwner(st fs.FileInfo) string {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("owned by uid %d, gid %d, mode %s", s.Uid, s.Gid, st.Mode())
	}
	return "mode " + st.Mode().String()
}
