package sqlite_test

import (
	"context"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/sqlite"
)

// TestWriterSyncsLogBeforeAnswer holds the writer's sync of the log and
// checks what a Register sees meanwhile: under the default synchronous FULL
// it is answered only after the sync, of the log file, once the commit's
// frames are in it.
func TestWriterSyncsLogBeforeAnswer(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rz.db")
	type syncCall struct {
		ino  uint64
		size int64
	}
	calls := make(chan syncCall, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseSync := func() { releaseOnce.Do(func() { close(release) }) }
	// holdPast is a size of the log: the first sync of a longer log, one
	// holding a later commit's frames, is held until released.
	var holdPast atomic.Int64
	holdPast.Store(math.MaxInt64)
	defer sqlite.SetFdatasync(func(fd int) error {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			return err
		}
		if p := holdPast.Load(); st.Size > p && holdPast.CompareAndSwap(p, math.MaxInt64) {
			calls <- syncCall{st.Ino, st.Size}
			<-release
		}
		return syscall.Fdatasync(fd)
	})()
	s := open(t, path)
	defer s.Close()
	defer releaseSync() // before Close, which waits for the writer
	if s.SyncMode() != "FULL" || !s.WriterSync() {
		t.Fatalf("default store: synchronous %s, writer sync %v; want FULL synced by the writer", s.SyncMode(), s.WriterSync())
	}
	// The first Register also reserves sequence numbers, a commit of its
	// own; the second is one commit, whose sync is held.
	if _, err := s.Register(ctx, reg("ns", pid(1), epoch.Add(time.Hour)), store.Limits{}, epoch); err != nil {
		t.Fatal(err)
	}
	var wal syscall.Stat_t
	if err := syscall.Stat(path+"-wal", &wal); err != nil {
		t.Fatal(err)
	}
	holdPast.Store(wal.Size)

	done := make(chan error, 1)
	go func() {
		_, err := s.Register(ctx, reg("ns", pid(2), epoch.Add(time.Hour)), store.Limits{}, epoch)
		done <- err
	}()
	var c syncCall
	select {
	case c = <-calls:
	case err := <-done:
		t.Fatalf("Register answered (%v) with no sync of the log before it", err)
	}
	// The sync is held: the Register waits for it. An answer now would be
	// one before the sync; it would come within microseconds.
	select {
	case err := <-done:
		t.Fatalf("Register answered (%v) while the sync of its commit was held", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := syscall.Stat(path+"-wal", &wal); err != nil {
		t.Fatal(err)
	}
	if c.ino != wal.Ino {
		t.Errorf("synced inode %d, want the log's, %d", c.ino, wal.Ino)
	}
	if c.size > wal.Size {
		t.Errorf("log of %d bytes at the sync, more than the %d now", c.size, wal.Size)
	}
	releaseSync()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := s.Discover(ctx, nil, "ns", 0, 10, epoch)
	if err != nil || len(got) != 2 {
		t.Fatalf("discovered %v, %v; want both registrations", got, err)
	}
}

// TestWriterSyncFailureFailsBatch makes the sync of the log fail: the
// Register it covered is not acknowledged, and the store goes on.
func TestWriterSyncFailureFailsBatch(t *testing.T) {
	ctx := context.Background()
	var fail atomic.Bool
	defer sqlite.SetFdatasync(func(fd int) error {
		if fail.Load() {
			return syscall.EIO
		}
		return syscall.Fdatasync(fd)
	})()
	s := open(t, filepath.Join(t.TempDir(), "rz.db"))
	defer s.Close()
	if _, err := s.Register(ctx, reg("ns", pid(1), epoch.Add(time.Hour)), store.Limits{}, epoch); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if _, err := s.Register(ctx, reg("ns", pid(2), epoch.Add(time.Hour)), store.Limits{}, epoch); err == nil {
		t.Fatal("Register acknowledged though the log's sync failed")
	}
	fail.Store(false)
	if _, err := s.Register(ctx, reg("ns", pid(3), epoch.Add(time.Hour)), store.Limits{}, epoch); err != nil {
		t.Fatalf("after a failed sync: %v", err)
	}
}
