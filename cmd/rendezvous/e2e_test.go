package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// cli runs a client subcommand of the binary and returns its stdout, failing
// the test on a non-zero exit.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary(t), args...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("rendezvous %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

func discoverJSON(t *testing.T, identity, point, ns string) []discoveredJSON {
	t.Helper()
	var out []discoveredJSON
	sc := bufio.NewScanner(strings.NewReader(cli(t, "discover", "--identity", identity, "--point", point, "--ns", ns, "--all", "--json")))
	for sc.Scan() {
		var d discoveredJSON
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("discover --json printed %q: %v", sc.Text(), err)
		}
		out = append(out, d)
	}
	return out
}

// stopServe sends SIGTERM and checks the daemon exits 0 within 5 s.
func stopServe(t *testing.T, d *daemon) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not exit within 5s of SIGTERM")
	}
}

func TestEndToEndAsAUser(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	alice, bob := filepath.Join(dir, "alice.key"), filepath.Join(dir, "bob.key")
	serveArgs := []string{"--data-dir", dataDir, "--listen", "/ip4/127.0.0.1/tcp/0", "--metrics-addr", "127.0.0.1:0", "--log-format", "json"}

	d := startServe(t, serveArgs...)
	point := d.addrs[0].String()
	info, err := peer.AddrInfoFromP2pAddr(d.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	aliceID := strings.TrimSpace(cli(t, "id", "--identity", alice))

	out := cli(t, "register", "--identity", alice, "--point", point, "--ns", "e2e", "--ttl", "3h", "--addr", "/ip4/127.0.0.1/tcp/4242")
	if !strings.Contains(out, aliceID) || !strings.Contains(out, "3h0m0s") {
		t.Fatalf("register printed %q, want alice's peer ID and the granted 3h", out)
	}
	found := discoverJSON(t, bob, point, "e2e")
	if len(found) != 1 || found[0].Peer != aliceID || found[0].Namespace != "e2e" || found[0].TTLSeconds != 10800 ||
		len(found[0].Addrs) != 1 || found[0].Addrs[0] != "/ip4/127.0.0.1/tcp/4242" {
		t.Fatalf("discover --json gave %+v, want alice in e2e for 10800s at /ip4/127.0.0.1/tcp/4242", found)
	}

	// A refusal is one line with the status, and a non-zero exit.
	cmd := exec.Command(binary(t), "register", "--identity", alice, "--point", point, "--ns", "e2e", "--ttl", "1m")
	msg, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "E_INVALID_TTL") || strings.Count(strings.TrimSpace(string(msg)), "\n") != 0 {
		t.Fatalf("register --ttl 1m: %v %q, want one line with E_INVALID_TTL and a failure", err, msg)
	}

	stopServe(t, d)

	// A restart keeps the peer ID and the registrations.
	d = startServe(t, serveArgs...)
	if !strings.HasSuffix(d.addrs[0].String(), "/p2p/"+info.ID.String()) {
		t.Fatalf("after restart the point is %s, want peer %s", d.addrs[0], info.ID)
	}
	point = d.addrs[0].String()
	if found := discoverJSON(t, bob, point, "e2e"); len(found) != 1 || found[0].Peer != aliceID {
		t.Fatalf("after restart discover gave %+v, want alice", found)
	}
	cli(t, "unregister", "--identity", alice, "--point", point, "--ns", "e2e")
	if found := discoverJSON(t, bob, point, "e2e"); len(found) != 0 {
		t.Fatalf("after unregister discover gave %+v, want nothing", found)
	}

	metricsAddr := metricsAddrOf(t, d)
	body := httpGet(t, "http://"+metricsAddr+"/metrics")
	// Since the restart: 3 DISCOVERs (a page and the empty one after it,
	// then the empty one after unregistering) and 1 UNREGISTER.
	for _, want := range []string{
		`libp2p_rendezvous_requests_total{status="OK",type="DISCOVER"} 3`,
		`libp2p_rendezvous_requests_total{status="OK",type="UNREGISTER"} 1`,
		`libp2p_rendezvous_request_duration_seconds_count{type="DISCOVER"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if got := httpGet(t, "http://"+metricsAddr+"/readyz"); !strings.Contains(got, "ready") {
		t.Errorf("/readyz: %q", got)
	}
	if got := httpGet(t, "http://"+metricsAddr+"/healthz"); !strings.Contains(got, "ok") {
		t.Errorf("/healthz: %q", got)
	}
	stopServe(t, d)
}

// metricsAddrOf reads the metrics address from the daemon's JSON logs.
func metricsAddrOf(t *testing.T, d *daemon) string {
	t.Helper()
	for _, line := range strings.Split(d.stderr.String(), "\n") {
		var entry struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "metrics endpoint ready" {
			return entry.Addr
		}
	}
	t.Fatalf("no metrics address in the logs:\n%s", d.stderr.String())
	return ""
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBenchAgainstServe(t *testing.T) {
	// The load comes from one address: trusting loopback lifts the
	// per-source quotas and rates, as an operator measuring a point would.
	d := startServe(t, "--store", "memory", "--data-dir", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--bench-echo",
		"--allow-prefix", "127.0.0.0/8")
	profile := filepath.Join(t.TempDir(), "cpu.prof")
	for _, workload := range []string{"register", "discover", "mixed", "echo"} {
		out := cli(t, "bench", "--point", d.addrs[0].String(), "--workload", workload, "--conns", "4", "--duration", "1s", "--json", "--quiet",
			"--limit", "3", "--cpuprofile", profile)
		var rep struct {
			Ops           int64   `json:"ops"`
			Errors        int64   `json:"errors"`
			Rate          float64 `json:"ops_per_sec"`
			P99           int64   `json:"p99_ns"`
			Registrations int64   `json:"registrations"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("bench --json printed %q: %v", out, err)
		}
		if rep.Ops == 0 || rep.Errors != 0 || rep.Rate <= 0 || rep.P99 <= 0 {
			t.Fatalf("%s: %+v, want operations without errors", workload, rep)
		}
		// The register run left 4 peers in each namespace it reached;
		// DISCOVERs of limit 3 get pages of at most 3.
		switch workload {
		case "discover", "mixed":
			if rep.Registrations == 0 || rep.Registrations > 3*rep.Ops {
				t.Fatalf("%s: %d registrations in %d answers, want 1 to 3 in most", workload, rep.Registrations, rep.Ops)
			}
		default:
			if rep.Registrations != 0 {
				t.Fatalf("%s: %d registrations, want none", workload, rep.Registrations)
			}
		}
		// A CPU profile is gzipped protobuf.
		if b, err := os.ReadFile(profile); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Fatalf("%s: --cpuprofile wrote %d bytes (%v), want a gzipped profile", workload, len(b), err)
		}
		if err := os.Remove(profile); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %.0f ops/s, p99 %v", workload, rep.Rate, time.Duration(rep.P99))
	}
	stopServe(t, d)
}

// With --peer-seed, a run's connections are the peers of the runs before it
// with the same seed: their REGISTERs refresh, and the namespace holds no
// more peers than connections.
func TestBenchPeerSeed(t *testing.T) {
	d := startServe(t, "--store", "memory", "--data-dir", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0",
		"--allow-prefix", "127.0.0.0/8")
	point := d.addrs[0].String()
	peersIn := func() int64 {
		out := cli(t, "bench", "--point", point, "--workload", "discover", "--conns", "1", "--ops", "1", "--duration", "10s",
			"--namespaces", "1", "--limit", "100", "--json", "--quiet")
		var rep struct {
			Ops           int64 `json:"ops"`
			Registrations int64 `json:"registrations"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Ops != 1 {
			t.Fatalf("bench --json printed %q (%v), want one DISCOVER", out, err)
		}
		return rep.Registrations
	}
	register := func(seed ...string) {
		cli(t, append([]string{"bench", "--point", point, "--workload", "register", "--conns", "3", "--ops", "30", "--duration", "10s",
			"--namespaces", "1", "--quiet"}, seed...)...)
	}
	register("--peer-seed", "7")
	register("--peer-seed", "7")
	if n := peersIn(); n != 3 {
		t.Fatalf("after two runs of 3 connections with one seed, the namespace holds %d peers, want 3", n)
	}
	register()
	if n := peersIn(); n != 6 {
		t.Fatalf("after a run without a seed, the namespace holds %d peers, want 6", n)
	}
	stopServe(t, d)
}

func TestServeOverQUICAndWebSocket(t *testing.T) {
	dir := t.TempDir()
	d := startServe(t, "--store", "memory", "--data-dir", dir,
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--listen", "/ip4/127.0.0.1/tcp/0/ws")
	alice, bob := filepath.Join(dir, "alice.key"), filepath.Join(dir, "bob.key")
	for _, a := range d.addrs {
		point := a.String()
		ns := "over-" + strings.Split(point, "/")[3]
		if strings.Contains(point, "/ws/") {
			ns = "over-ws"
		}
		cli(t, "register", "--identity", alice, "--point", point, "--ns", ns)
		if found := discoverJSON(t, bob, point, ns); len(found) != 1 {
			t.Fatalf("through %s: discovered %+v, want alice", point, found)
		}
	}
	if len(d.addrs) != 2 {
		t.Fatalf("serve printed %v, want a QUIC and a WebSocket address", d.addrs)
	}
	stopServe(t, d)
}
