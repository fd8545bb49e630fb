package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/store/sqlite"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the rendezvous command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rendezvous-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "rendezvous")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("go build: %s", out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// daemon is a running `rendezvous serve`.
type daemon struct {
	cmd    *exec.Cmd
	addrs  []ma.Multiaddr
	done   chan error
	stderr *syncBuffer
}

func startServe(t *testing.T, args ...string) *daemon {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"serve"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, done: make(chan error, 1), stderr: stderr}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		d.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("serve's stderr:\n%s", stderr.String())
		}
	})
	// One address per --listen.
	want := 0
	for _, a := range args {
		if a == "--listen" {
			want++
		}
	}
	deadline := time.After(30 * time.Second)
	for len(d.addrs) < max(want, 1) {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("serve exited before printing its addresses")
			}
			a, err := ma.NewMultiaddr(line)
			if err != nil {
				t.Fatalf("serve printed %q, not a multiaddr: %v", line, err)
			}
			d.addrs = append(d.addrs, a)
		case <-deadline:
			t.Fatal("serve did not print its addresses within 30s")
		}
	}
	go func() {
		for range lines {
		}
	}()
	return d
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestServeRegisterDiscoverAndExitOnSIGTERM(t *testing.T) {
	d := startServe(t, "--store", "memory", "--data-dir", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0")
	info, err := peer.AddrInfoFromP2pAddr(d.addrs[0])
	if err != nil {
		t.Fatalf("printed address %s does not end in /p2p/<peer id>: %v", d.addrs[0], err)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.Connect(ctx, *info); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterAt(ctx, info.ID, "e2e", 0); err != nil {
		t.Fatal(err)
	}
	regs, _, err := c.DiscoverAt(ctx, info.ID, "e2e", 0, nil)
	if err != nil || len(regs) != 1 || regs[0].Peer.ID != h.ID() {
		t.Fatalf("discovered %v, %v; want %s", regs, err, h.ID())
	}

	stopServe(t, d)
}

// TestSetMemoryLimit: --memory-limit sets the runtime's soft limit, 0
// leaves it, and a negative one is refused.
func TestSetMemoryLimit(t *testing.T) {
	was := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(was)
	if err := setMemoryLimit(900 << 20); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 900<<20 {
		t.Errorf("limit %d after --memory-limit %d", got, 900<<20)
	}
	if err := setMemoryLimit(0); err != nil || debug.SetMemoryLimit(-1) != 900<<20 {
		t.Errorf("--memory-limit 0 changed the limit to %d (%v)", debug.SetMemoryLimit(-1), err)
	}
	if err := setMemoryLimit(-1); err == nil {
		t.Error("--memory-limit -1 accepted")
	}
}

// TestEmbeddedSyncSetting: --embedded-sync opens the embedded store in the
// mode named, in either case, and refuses any other.
func TestEmbeddedSyncSetting(t *testing.T) {
	ctx := context.Background()
	for mode, want := range map[string]string{"full": "FULL", "normal": "NORMAL", "NORMAL": "NORMAL"} {
		st, err := openStore(ctx, "embedded", t.TempDir(), embeddedConfig{syncMode: mode})
		if err != nil {
			t.Fatalf("--embedded-sync %s: %v", mode, err)
		}
		got := st.(*sqlite.Store).SyncMode()
		st.Close()
		if got != want {
			t.Errorf("--embedded-sync %s: store opened under %s, want %s", mode, got, want)
		}
	}
	for _, mode := range []string{"", "off", "extra"} {
		if st, err := openStore(context.Background(), "embedded", t.TempDir(), embeddedConfig{syncMode: mode}); err == nil {
			st.Close()
			t.Errorf("--embedded-sync %q accepted", mode)
		} else if !strings.Contains(err.Error(), "want full or normal") {
			t.Errorf("--embedded-sync %q: %v, want an error naming the values", mode, err)
		}
	}
}
