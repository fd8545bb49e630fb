package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockFileName is the file in the data directory that serve holds locked
// while it runs, so that one process at a time uses the directory's
// identity and store.
const lockFileName = "serve.lock"

// errDataDirInUse says another process holds the data directory.
var errDataDirInUse = errors.New("is in use by another rendezvous serve")

// openDataDir creates dir if needed, checks that this process can write in
// it and locks it for this process alone. The returned func releases the
// lock; the kernel releases it too when the process exits, however it
// exits.
func openDataDir(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, dataDirError(dir, err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, dataDirError(dir, err)
	}
	if err := lockFile(f); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if pid := strings.TrimSpace(string(holder)); pid != "" {
			return nil, fmt.Errorf("data directory %s %w (pid %s holds %s): give each point its own --data-dir", dir, errDataDirInUse, pid, path)
		}
		return nil, fmt.Errorf("data directory %s %w (it holds %s: %v): give each point its own --data-dir", dir, errDataDirInUse, path, err)
	}
	// Who holds it, for the message another serve prints.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		_ = unlockFile(f)
		_ = f.Close()
	}, nil
}

// dataDirError explains why the data directory cannot be used: for a
// permission error, who the process runs as and who owns the directory.
func dataDirError(dir string, err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	owner := ""
	if st, serr := os.Stat(dir); serr == nil {
		owner = fmt.Sprintf(", which is %s", describeOwner(st))
	}
	return fmt.Errorf("data directory %s is not writable by uid %d (gid %d)%s: make it writable by that user, or give another --data-dir: %w",
		dir, os.Geteuid(), os.Getegid(), owner, err)
}
