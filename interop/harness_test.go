package interop

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// jsDir is the JavaScript harness.
const jsDir = "js"

// needJS skips the test when the JavaScript harness is not installed.
func needJS(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the JavaScript interoperability tests need it")
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@canvas-js", "libp2p-rendezvous")); err != nil {
		t.Skip("the JavaScript harness is not installed: run interop/js/setup.sh (scripts/test.sh does)")
	}
}

// syncBuffer collects a child's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// node is a child node process speaking JSON lines.
type node struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncBuffer
}

func startNode(t *testing.T, script string, args ...string) *node {
	t.Helper()
	cmd := exec.Command("node", append([]string{script}, args...)...)
	cmd.Dir = jsDir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 16), stderr: &syncBuffer{}}
	cmd.Stderr = n.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			n.lines <- sc.Text()
		}
		close(n.lines)
	}()
	t.Cleanup(func() {
		_ = stdin.Close() // the scripts exit when stdin closes
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", script, n.stderr.String())
		}
	})
	return n
}

// readLine returns the next stdout line, within the deadline.
func (n *node) readLine(timeout time.Duration) string {
	n.t.Helper()
	select {
	case line, ok := <-n.lines:
		if !ok {
			n.t.Fatalf("%s exited: %s", n.cmd.Args[1], n.stderr.String())
		}
		return line
	case <-time.After(timeout):
		n.t.Fatalf("%s said nothing within %v", n.cmd.Args[1], timeout)
	}
	return ""
}

// jsServer is the JavaScript rendezvous point.
type jsServer struct {
	*node
	info peer.AddrInfo
}

func startJSServer(t *testing.T, args ...string) *jsServer {
	t.Helper()
	n := startNode(t, "server.mjs", args...)
	var ready struct {
		Multiaddr string `json:"multiaddr"`
	}
	if err := json.Unmarshal([]byte(n.readLine(60*time.Second)), &ready); err != nil {
		t.Fatal(err)
	}
	info, err := peer.AddrInfoFromString(ready.Multiaddr)
	if err != nil {
		t.Fatal(err)
	}
	return &jsServer{node: n, info: *info}
}

// jsClient is the JavaScript client, driven by commands.
type jsClient struct {
	*node
	id peer.ID
}

func startJSClient(t *testing.T, args ...string) *jsClient {
	t.Helper()
	c := &jsClient{node: startNode(t, "client.mjs", args...)}
	var r struct {
		PeerID string `json:"peerId"`
	}
	c.do(map[string]any{"op": "id"}, &r)
	id, err := peer.Decode(r.PeerID)
	if err != nil {
		t.Fatal(err)
	}
	c.id = id
	return c
}

// result is the common part of every answer of client.mjs.
type result struct {
	OK        bool   `json:"ok"`
	Error     string `json:"error"`
	ErrorName string `json:"errorName"`
	Status    string `json:"status"`
}

// try sends a command and decodes the answer into out, returning the
// common part whether the command succeeded or not.
func (c *jsClient) try(cmd map[string]any, out any) result {
	c.t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c.stdin, "%s\n", b); err != nil {
		c.t.Fatal(err)
	}
	line := c.readLine(60 * time.Second)
	var r result
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		c.t.Fatalf("client.mjs answered %q: %v", line, err)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(line), out); err != nil {
			c.t.Fatalf("client.mjs answered %q: %v", line, err)
		}
	}
	return r
}

// do is try, failing the test unless the command succeeded.
func (c *jsClient) do(cmd map[string]any, out any) {
	c.t.Helper()
	if r := c.try(cmd, out); !r.OK {
		c.t.Fatalf("client.mjs %v: %s (%s %s)", cmd["op"], r.Error, r.ErrorName, r.Status)
	}
}

// jsRegistration is a registration as client.mjs reports it.
type jsRegistration struct {
	PeerID     string   `json:"peerId"`
	Multiaddrs []string `json:"multiaddrs"`
	NS         string   `json:"ns"`
	TTL        *uint64  `json:"ttl"`
}

func (c *jsClient) discover(ns string, limit int) []jsRegistration {
	c.t.Helper()
	var r struct {
		Registrations []jsRegistration `json:"registrations"`
	}
	c.do(map[string]any{"op": "discover", "ns": ns, "limit": limit}, &r)
	return r.Registrations
}

func peerIDs(regs []jsRegistration) []string {
	out := make([]string, len(regs))
	for i, r := range regs {
		out[i] = r.PeerID
	}
	return out
}
