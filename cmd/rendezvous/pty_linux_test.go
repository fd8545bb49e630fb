package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY returns the master and slave ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	var unlock int32
	var n uint32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		t.Fatalf("unlocking the pty: %v", errno)
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); errno != 0 {
		t.Fatalf("numbering the pty: %v", errno)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { _ = master.Close(); _ = slave.Close() })
	return master, slave
}

func TestIsTerminal(t *testing.T) {
	_, slave := openPTY(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, tc := range []struct {
		name string
		f    io.Writer
		want bool
	}{
		{"a pty", slave, true},
		{"a pipe", w, false},
		{os.DevNull, null, false},
		{"a buffer", &bytes.Buffer{}, false},
	} {
		if got := isTerminal(tc.f); got != tc.want {
			t.Errorf("isTerminal(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testNoProgressOnATerminal(t *testing.T, p bigPoint) {
	master, slave := openPTY(t)
	cmd := exec.Command(binary(t), "discover", "--identity", filepath.Join(t.TempDir(), "lister.key"), "--point", p.addr,
		"--all", "--json", "--limit", "100", "--progress-interval", "1ns")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = slave, &stderr
	out := readAll(master)
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	_ = slave.Close() // the master now reads to the end, then fails
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(<-out, "\r\n", "\n")), "\n")
	if n := checkEachOnce(t, lines); n != p.total {
		t.Fatalf("printed %d registrations on the terminal, want %d", n, p.total)
	}
	if stderr.Len() != 0 {
		t.Fatalf("stderr %q with stdout a terminal, want nothing", stderr.String())
	}
}

// readAll collects what f yields until it fails (a pty's master fails with
// EIO once no process holds its other end).
func readAll(f *os.File) <-chan string {
	out := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		_, _ = b.ReadFrom(f)
		out <- b.String()
	}()
	return out
}
