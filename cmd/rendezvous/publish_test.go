package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	ma "github.com/multiformats/go-multiaddr"
)

// What an operator publishing a point relies on: readable help, addresses
// that stay the same across restarts, announced addresses, and a data
// directory that one process holds.

func TestServeHelpNamesEveryArgumentByItsType(t *testing.T) {
	var stderr bytes.Buffer
	if code := serve([]string{"-h"}, io.Discard, &stderr); code != 2 {
		t.Fatalf("serve -h exited %d, want 2 (flag.ErrHelp)", code)
	}
	help := stderr.String()
	if !strings.Contains(help, "  -bench-echo\n") {
		t.Errorf("serve -h shows --bench-echo as something else than a switch:\n%s", help)
	}
	// flag takes a back-quoted word of a usage string for the argument's
	// name: every argument must be named by its type instead.
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var cfg serveConfig
	cfg.flags(fs)
	types := map[string]bool{"": true, "string": true, "int": true, "uint": true, "int64": true, "uint64": true, "float": true, "duration": true, "value": true}
	fs.VisitAll(func(f *flag.Flag) {
		if name, _ := flag.UnquoteUsage(f); !types[name] {
			t.Errorf("-%s shows its argument as %q: a back-quoted word in its usage", f.Name, name)
		}
	})
}

func TestServeRefusesADataDirInUse(t *testing.T) {
	dir := t.TempDir()
	start := func() (*point, error) {
		var cfg serveConfig
		cfg.flags(flag.NewFlagSet("serve", flag.ContinueOnError))
		cfg.store = "embedded"
		cfg.dataDir = dir
		cfg.listen.values = []string{"/ip4/127.0.0.1/tcp/0"}
		return startPoint(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	first, err := start()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := start(); !errors.Is(err, errDataDirInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("a second point on %s: %v; want it refused, naming the process that holds it", dir, err)
	}
	first.close()
	again, err := start()
	if err != nil {
		t.Fatalf("after the first point closed, a new one on %s: %v", dir, err)
	}
	again.close()
}

func TestServeSecondProcessOnADataDirStops(t *testing.T) {
	dir := t.TempDir()
	d := startServe(t, "--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0")
	var stderr bytes.Buffer
	cmd := exec.Command(binary(t), "serve", "--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0")
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("a second serve on the same data directory: %v, want exit status 1", err)
	}
	if want := fmt.Sprintf("pid %d", d.cmd.Process.Pid); !strings.Contains(stderr.String(), "in use by another rendezvous serve") || !strings.Contains(stderr.String(), want) {
		t.Fatalf("the second serve said %q; want it to say the directory is in use, by %s", stderr.String(), want)
	}
	stopServe(t, d)
}

func TestServeSaysWhyTheDataDirIsUnusable(t *testing.T) {
	// A data directory that is a file.
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openDataDir(file); err == nil || !strings.HasPrefix(err.Error(), "data directory "+file+": ") {
		t.Fatalf("a data directory that is a file: %v", err)
	}

	// A directory the process may not write to. Root may write anywhere,
	// so as root only the message is checked, on the error the kernel
	// would give.
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	err := dataDirError(dir, &fs.PathError{Op: "open", Path: filepath.Join(dir, lockFileName), Err: fs.ErrPermission})
	want := fmt.Sprintf("data directory %s is not writable by uid %d (gid %d), which is owned by uid %d, gid %d, mode dr-xr-xr-x", dir, os.Geteuid(), os.Getegid(), os.Geteuid(), os.Getegid())
	if !strings.HasPrefix(err.Error(), want) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("got %q, want it to start %q and wrap the permission error", err, want)
	}
	if os.Geteuid() == 0 {
		t.Log("running as root, which may write anywhere: the message was checked on a permission error made up, not one from the kernel")
		return
	}
	if _, err := openDataDir(dir); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("opening %s: %v, want %q", dir, err, want)
	}
}

// freePorts returns n ports of network (tcp or udp) that were free on
// 127.0.0.1 a moment ago.
func freePorts(t *testing.T, network string, n int) []int {
	t.Helper()
	var ports []int
	var closers []io.Closer
	for range n {
		switch network {
		case "tcp":
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			closers = append(closers, l)
			ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		default:
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			closers = append(closers, c)
			ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
		}
	}
	for _, c := range closers {
		_ = c.Close()
	}
	return ports
}

func TestServeBrowserAddrsSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	tcp, udp := freePorts(t, "tcp", 1), freePorts(t, "udp", 2)
	args := []string{"--data-dir", dir, "--store", "memory",
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/ws", tcp[0]),
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1/webtransport", udp[0]),
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/udp/%d/webrtc-direct", udp[1]),
	}
	printed := func() []string {
		d := startServe(t, args...)
		var out []string
		for _, a := range d.addrs {
			out = append(out, a.String())
		}
		stopServe(t, d)
		return out
	}
	first, second := printed(), printed()
	if strings.Join(first, "\n") != strings.Join(second, "\n") {
		t.Fatalf("serve printed\n%s\nthen, restarted on the same data directory,\n%s", strings.Join(first, "\n"), strings.Join(second, "\n"))
	}
	hashes := 0
	for _, a := range first {
		hashes += strings.Count(a, "/certhash/")
	}
	// WebTransport: the current and the next certificate; WebRTC-direct: one.
	if hashes != 3 {
		t.Fatalf("%d certhashes in %q, want 2 for WebTransport and 1 for WebRTC-direct", hashes, first)
	}
	t.Logf("the same addresses after a restart:\n%s", strings.Join(first, "\n"))
}

func TestServeAnnouncesTheAddressesItIsGiven(t *testing.T) {
	announced := []string{"/dns4/rendezvous.example.com/tcp/4457", "/ip4/203.0.113.7/udp/4457/quic-v1/webtransport"}
	listenAddr := ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePorts(t, "tcp", 1)[0]))
	d := startServe(t, "--data-dir", t.TempDir(), "--store", "memory",
		"--listen", listenAddr.String(), "--listen", "/ip4/127.0.0.1/udp/0/quic-v1/webtransport",
		"--announce", announced[0], "--announce", announced[1])
	info, err := peer.AddrInfoFromP2pAddr(d.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	suffix := "/p2p/" + info.ID.String()
	var printed []string
	for _, a := range d.addrs {
		printed = append(printed, a.String())
	}
	slices.Sort(printed) // /dns4 before /ip4, as announced
	if len(printed) != 2 || printed[0] != announced[0]+suffix || !strings.HasPrefix(printed[1], announced[1]+"/certhash/") || !strings.HasSuffix(printed[1], suffix) {
		t.Fatalf("serve printed %q; want %q, with certhashes on the WebTransport one, each ending in %s", printed, announced, suffix)
	}

	// Identify gives the announced addresses, not the loopback ones. The
	// point is reached where it listens.
	h, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: info.ID, Addrs: []ma.Multiaddr{listenAddr}}); err != nil {
		t.Fatal(err)
	}
	ids, ok := h.(interface{ IDService() identify.IDService })
	if !ok {
		t.Fatal("the client host has no identify service")
	}
	select {
	case <-ids.IDService().IdentifyWait(h.Network().ConnsToPeer(info.ID)[0]):
	case <-ctx.Done():
		t.Fatal("identify did not finish within 20s")
	}
	var got []string
	for _, a := range h.Peerstore().Addrs(info.ID) {
		got = append(got, a.String())
	}
	for _, want := range []string{announced[0], printed[1][:len(printed[1])-len(suffix)]} {
		if !strings.Contains(strings.Join(got, " "), want) {
			t.Errorf("after identify the point's addresses are %q, without the announced %s", got, want)
		}
	}
	stopServe(t, d)
}

// TestServeAsTheImageUser runs serve as uid 65532, the image's nonroot user,
// the way the container does: on a data directory root owns (what a new
// volume over a missing /data was), then on one that user owns (what the
// image ships). It needs root, to start a process as another user.
func TestServeAsTheImageUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run serve as uid 65532; TestServeSaysWhyTheDataDirIsUnusable checks the message on this machine's own permissions")
	}
	const uid = 65532
	// A tree the user can reach: the binary and two data directories.
	base, err := os.MkdirTemp("", "rendezvous-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "rendezvous")
	data, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	rootOwned, userOwned := filepath.Join(base, "root-data"), filepath.Join(base, "user-data")
	for _, d := range []string{rootOwned, userOwned} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(userOwned, uid, uid); err != nil {
		t.Fatal(err)
	}
	asUser := func(dir string) *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--data-dir", dir, "--store", "embedded", "--listen", "/ip4/127.0.0.1/tcp/0")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		return cmd
	}

	out, err := asUser(rootOwned).CombinedOutput()
	want := fmt.Sprintf("data directory %s is not writable by uid %d (gid %d), which is owned by uid 0, gid 0, mode drwxr-xr-x", rootOwned, uid, uid)
	if err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("serve as uid %d on a directory root owns: %v\n%s\nwant it to say %q", uid, err, out, want)
	}

	cmd := asUser(userOwned)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "/p2p/") {
		t.Fatalf("serve as uid %d on a directory it owns printed %q (%v); stderr:\n%s", uid, line, err, stderr.String())
	}
	for _, f := range []string{"identity.key", "registrations.db", lockFileName} {
		st, err := os.Stat(filepath.Join(userOwned, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if s := st.Sys().(*syscall.Stat_t); s.Uid != uid {
			t.Errorf("%s is owned by uid %d, want %d", f, s.Uid, uid)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
}
