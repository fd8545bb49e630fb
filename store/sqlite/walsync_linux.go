package sqlite

import (
	"os"
	"runtime"
	"syscall"
)

// writerSyncSupported reports whether the writer can sync the log itself.
const writerSyncSupported = true

func openWALSync(path string) (*walSync, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &walSync{fd: fd}, nil
}

func (w *walSync) close() error { return syscall.Close(w.fd) }

// fdatasync is fdatasync(2) of fd; tests replace it.
//
// Every write waits for the writer, and the writer for this sync. Made as an
// ordinary system call, the writer's processor (P) is handed to other
// goroutines while the sync blocks, and once it returns the writer queues
// behind them for one: under load, that wait was as long as the sync (see
// BENCHMARKS.md). Made as a raw system call, the writer keeps its P through
// the sync and goes on as soon as it returns, while the other Ps run the
// rest of the point. With a single P nothing else could run during the sync,
// so the call is then an ordinary one. The cost: a stop of the world (at
// each garbage collection) that comes during the sync waits for it to end.
var fdatasync = func(fd int) error {
	for {
		var e syscall.Errno
		if runtime.GOMAXPROCS(0) > 1 {
			_, _, e = syscall.RawSyscall(syscall.SYS_FDATASYNC, uintptr(fd), 0, 0)
		} else {
			_, _, e = syscall.Syscall(syscall.SYS_FDATASYNC, uintptr(fd), 0, 0)
		}
		switch e {
		case 0:
			return nil
		case syscall.EINTR:
			continue
		}
		return os.NewSyscallError("fdatasync", e)
	}
}
