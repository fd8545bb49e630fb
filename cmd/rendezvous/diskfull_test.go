package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
)

// tmpfs mounts a tmpfs of size bytes on a new directory, unmounted at the
// end of the test; it skips the test where mounting is not allowed.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fillDisk writes a file in dir until the file system is full, and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 64<<10)
	for range 1 << 14 { // at most 1 GiB
		if _, err := f.Write(block); err != nil {
			return path // no space left
		}
	}
	t.Fatal("the file system never filled up")
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func readyz(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// The embedded store on a full disk: REGISTER is refused E_UNAVAILABLE,
// /readyz answers 503, the log says so once per interval, and the point
// recovers by itself once space is freed.
func TestDiskFull(t *testing.T) {
	dir := tmpfs(t, 8<<20)
	metrics := freePort(t)
	d := startServe(t, "--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--metrics-addr", metrics,
		"--min-ttl", "1m", "--allow-prefix", "127.0.0.0/8", "--fault-log-interval", "1h")
	info, err := peer.AddrInfoFromP2pAddr(d.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	h := testhost.New(t)
	c, err := client.New(h, client.WithTTLPolicy(rendezvous.TTLPolicy{Min: time.Minute, Max: time.Hour, Default: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := h.Connect(ctx, *info); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterAt(ctx, info.ID, "before", 0); err != nil {
		t.Fatalf("register with room on the disk: %v", err)
	}
	if code := readyz(t, metrics); code != http.StatusOK {
		t.Fatalf("/readyz %d with room on the disk, want 200", code)
	}

	filler := fillDisk(t, dir)
	refused := 0
	for i := range 1000 { // the WAL may still have room for a few
		_, err := c.RegisterAt(ctx, info.ID, fmt.Sprintf("full-%d", i), 0)
		if err == nil {
			continue
		}
		if s := rendezvous.StatusOf(err); s != rendezvous.StatusUnavailable {
			t.Fatalf("register on a full disk: %v, want E_UNAVAILABLE", err)
		}
		if refused++; refused == 20 {
			break
		}
	}
	if refused < 20 {
		t.Fatal("the point kept accepting registrations on a full disk")
	}
	if code := readyz(t, metrics); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d while writes fail, want 503", code)
	}
	if n := strings.Count(d.stderr.String(), `msg="store unavailable"`); n != 1 {
		t.Fatalf("%d log lines about the store for 20 refusals, want 1", n)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterAt(ctx, info.ID, "after", 0); err != nil {
		t.Fatalf("register once space is freed: %v", err)
	}
	if code := readyz(t, metrics); code != http.StatusOK {
		t.Fatalf("/readyz %d once space is freed, want 200", code)
	}
}
