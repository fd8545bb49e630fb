package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// fakePoint serves pages of a listing from memory: page k (k from 0) holds
// sizes[k] registrations and the cookie "k+1", the last page an empty
// cookie.
type fakePoint struct {
	t     *testing.T
	sizes []int
	ids   []peer.ID
	asked [][]byte // the cookies asked with, in order
	// before, if set, is called before each page is handed out, with the
	// number of pages handed out so far.
	before func(handed int)
}

func newFakePoint(t *testing.T, sizes ...int) *fakePoint {
	f := &fakePoint{t: t, sizes: sizes}
	for range 4 {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		f.ids = append(f.ids, id)
	}
	return f
}

func (f *fakePoint) fetch(_ context.Context, cookie []byte) ([]client.Registration, []byte, error) {
	k := len(f.asked)
	f.asked = append(f.asked, cookie)
	if want := fmt.Sprint(k); (k == 0 && cookie != nil) || (k > 0 && string(cookie) != want) {
		f.t.Fatalf("page %d asked with cookie %q, want %q", k, cookie, want)
	}
	if f.before != nil {
		f.before(k)
	}
	if k >= len(f.sizes) {
		f.t.Fatalf("asked for page %d of %d", k, len(f.sizes))
	}
	regs := make([]client.Registration, f.sizes[k])
	for i := range regs {
		regs[i] = client.Registration{
			Namespace: fmt.Sprintf("page-%d", k),
			Peer:      peer.AddrInfo{ID: f.ids[i%len(f.ids)], Addrs: []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", i+1))}},
			TTL:       time.Hour,
		}
	}
	next := []byte(fmt.Sprint(k + 1))
	if k == len(f.sizes)-1 {
		next = nil
	}
	return regs, next, nil
}

func TestListPagesPrintsEachPageBeforeAskingForTheNext(t *testing.T) {
	f := newFakePoint(t, 3, 5, 2, 4)
	var out bytes.Buffer
	w := newJSONLines(&out)
	f.before = func(handed int) {
		want := 0
		for _, n := range f.sizes[:handed] {
			want += n
		}
		if got := strings.Count(out.String(), "\n"); got != want {
			t.Fatalf("asking for page %d with %d lines printed, want the %d of the pages before", handed, got, want)
		}
	}
	pages, found, err := listPages(context.Background(), f.fetch, true, 100, func(regs []client.Registration, _, _ int) error {
		return w.writePage(regs)
	})
	if err != nil || pages != 4 || found != 14 {
		t.Fatalf("listPages: %d pages, %d registrations, %v; want 4, 14, nil", pages, found, err)
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var d discoveredJSON
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil || d.TTLSeconds != 3600 || len(d.Addrs) != 1 {
			t.Fatalf("printed %q (%v), want a JSON registration", sc.Text(), err)
		}
	}
}

func TestListPagesStops(t *testing.T) {
	for _, tc := range []struct {
		name      string
		all       bool
		sizes     []int
		maxPages  int
		wantPages int
		wantErr   bool
	}{
		{"one page without all", false, []int{3, 3}, 10, 1, false},
		{"at a page without a cookie", true, []int{3, 3, 1}, 10, 3, false},
		{"at an empty page", true, []int{3, 0, 3}, 10, 2, false},
		{"failing after max pages with more to list", true, []int{3, 3, 3, 3}, 2, 2, true},
		{"at max pages when the last has no cookie", true, []int{3, 3}, 2, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakePoint(t, tc.sizes...)
			pages, _, err := listPages(context.Background(), f.fetch, tc.all, tc.maxPages, func([]client.Registration, int, int) error { return nil })
			if pages != tc.wantPages || (err != nil) != tc.wantErr {
				t.Fatalf("%d pages, %v; want %d pages, an error: %v", pages, err, tc.wantPages, tc.wantErr)
			}
		})
	}
	t.Run("at a repeated cookie", func(t *testing.T) {
		calls := 0
		fetch := func(_ context.Context, cookie []byte) ([]client.Registration, []byte, error) {
			calls++
			return []client.Registration{{TTL: time.Hour}}, []byte("same"), nil
		}
		pages, _, err := listPages(context.Background(), fetch, true, 10, func([]client.Registration, int, int) error { return nil })
		if pages != 2 || calls != 2 || err != nil {
			t.Fatalf("%d pages, %d requests, %v; want 2, 2, nil", pages, calls, err)
		}
	})
}

func TestTableKeepsTheFirstPagesColumns(t *testing.T) {
	f := newFakePoint(t, 2, 2)
	var out bytes.Buffer
	tw := newTable(&out)
	if _, _, err := listPages(context.Background(), f.fetch, true, 10, func(regs []client.Registration, _, _ int) error { return tw.writePage(regs) }); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "PEER ") {
		t.Fatalf("printed %q, want a header and 4 rows", out.String())
	}
	col := strings.Index(lines[0], "ADDRESSES")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], "/ip4/") {
			t.Fatalf("row %q does not start its address at column %d of the header", l, col)
		}
	}
}

// bigPoint is a `rendezvous serve` holding registrations of a few peers,
// each in up to 1000 namespaces, registered over libp2p.
type bigPoint struct {
	addr  string
	total int
}

func startBigPoint(t *testing.T, total int) bigPoint {
	t.Helper()
	// Loopback is trusted: every peer and the lister come from 127.0.0.1.
	d := startServe(t, "--store", "memory", "--data-dir", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "warn",
		"--allow-prefix", "127.0.0.0/8")
	info, err := peer.AddrInfoFromP2pAddr(d.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, total/1000+1)
	for first := 0; first < total; first += 1000 {
		wg.Go(func() {
			h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
			if err != nil {
				errs <- err
				return
			}
			defer h.Close()
			if err := h.Connect(ctx, *info); err != nil {
				errs <- err
				return
			}
			c, err := client.New(h)
			if err != nil {
				errs <- err
				return
			}
			for k := range min(1000, total-first) {
				if _, err := c.RegisterAt(ctx, info.ID, fmt.Sprintf("big-%04d", k), 0); err != nil {
					errs <- fmt.Errorf("registering in big-%04d: %w", k, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return bigPoint{addr: d.addrs[0].String(), total: total}
}

// discoverRun is the outcome of one `rendezvous discover`.
type discoverRun struct {
	lines   []string // stdout, line by line
	stderr  string
	code    int
	elapsed time.Duration
}

// runDiscover runs `rendezvous discover --point P --all --json args...`
// with stdout a pipe.
func runDiscover(t *testing.T, p bigPoint, args ...string) discoverRun {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"discover", "--identity", filepath.Join(t.TempDir(), "lister.key"), "--point", p.addr, "--all", "--json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := discoverRun{stderr: stderr.String(), elapsed: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if out := strings.TrimSuffix(stdout.String(), "\n"); out != "" {
		r.lines = strings.Split(out, "\n")
	}
	return r
}

// checkEachOnce checks that lines are JSON registrations, each (peer,
// namespace) at most once, and returns how many there are.
func checkEachOnce(t *testing.T, lines []string) int {
	t.Helper()
	seen := make(map[[2]string]bool, len(lines))
	for _, l := range lines {
		var d discoveredJSON
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("printed %q, not a JSON line: %v", l, err)
		}
		k := [2]string{d.Peer, d.Namespace}
		if seen[k] {
			t.Fatalf("printed %s in %s twice", d.Peer, d.Namespace)
		}
		seen[k] = true
	}
	return len(seen)
}

func progressLines(stderr string) int {
	n := 0
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "discover: ") && strings.HasSuffix(l, "registrations/s") {
			n++
		}
	}
	return n
}

func TestDiscoverAllOfAPointOf2500(t *testing.T) {
	p := startBigPoint(t, 2500)

	t.Run("prints every registration once in JSON lines", func(t *testing.T) {
		r := runDiscover(t, p, "--limit", "100")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if n := checkEachOnce(t, r.lines); n != p.total {
			t.Fatalf("printed %d registrations, want %d", n, p.total)
		}
	})

	t.Run("prints the pages it got before failing", func(t *testing.T) {
		// Until now nothing was printed before the last page arrived: a
		// listing that failed printed nothing.
		r := runDiscover(t, p, "--limit", "100", "--max-pages", "3")
		if r.code != 1 || !strings.Contains(r.stderr, "--max-pages") {
			t.Fatalf("exit %d, %q; want 1 and --max-pages named", r.code, r.stderr)
		}
		if n := checkEachOnce(t, r.lines); n != 300 {
			t.Fatalf("printed %d registrations, want the 300 of the 3 pages", n)
		}
	})

	t.Run("reports progress on stderr when stdout is not a terminal", func(t *testing.T) {
		r := runDiscover(t, p, "--limit", "100", "--progress-interval", "1ns")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		// A line per page (26: 25 full, then an empty one), then the totals.
		if n := progressLines(r.stderr); n != 27 || !strings.Contains(r.stderr, "discover: done: 26 pages, 2500 registrations in ") {
			t.Fatalf("stderr %q: %d progress lines, want 26 and the totals", r.stderr, n)
		}
		if r := runDiscover(t, p, "--limit", "100", "--progress-interval", "0"); r.code != 0 || r.stderr != "" {
			t.Fatalf("--progress-interval 0: exit %d, stderr %q; want 0 and nothing", r.code, r.stderr)
		}
	})

	t.Run("reports no progress when stdout is a terminal", func(t *testing.T) {
		testNoProgressOnATerminal(t, p)
	})

	t.Run("timeout bounds one request, not the listing", func(t *testing.T) {
		// Pages of one registration: 2500 requests. The listing takes
		// about full; a request about full/2500.
		first := runDiscover(t, p, "--limit", "1", "--progress-interval", "0")
		if first.code != 0 || checkEachOnce(t, first.lines) != p.total {
			t.Fatalf("exit %d, %d lines: %s", first.code, len(first.lines), first.stderr)
		}
		timeout := first.elapsed / 4
		r := runDiscover(t, p, "--limit", "1", "--progress-interval", "0", "--timeout", timeout.String())
		if r.code != 0 || checkEachOnce(t, r.lines) != p.total {
			t.Fatalf("with --timeout %s: exit %d, %d lines: %s", timeout, r.code, len(r.lines), r.stderr)
		}
		if r.elapsed <= timeout {
			t.Fatalf("the listing took %s, no longer than --timeout %s (the first took %s): this test proves nothing", r.elapsed, timeout, first.elapsed)
		}
		t.Logf("2500 requests: %s with the default timeout, %s with --timeout %s", first.elapsed, r.elapsed, timeout)

		r = runDiscover(t, p, "--limit", "1", "--progress-interval", "0", "--deadline", timeout.String())
		if r.code != 1 || !strings.Contains(r.stderr, "--deadline reached") || len(r.lines) >= p.total {
			t.Fatalf("with --deadline %s: exit %d, %d lines, %q; want a failure naming --deadline", timeout, r.code, len(r.lines), r.stderr)
		}
	})
}

func TestDiscoverLimitZeroAsksForTheClientsDefault(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	asked := make(chan *pb.Message_Discover, 1)
	h.SetStreamHandler(rendezvous.ProtocolID, func(s network.Stream) {
		defer s.Close()
		var req pb.Message
		if err := pbio.NewDelimitedReader(s, 1<<16).ReadMsg(&req); err != nil {
			_ = s.Reset()
			return
		}
		asked <- req.GetDiscover()
		_ = pbio.NewDelimitedWriter(s).WriteMsg(&pb.Message{
			Type:             pb.Message_DISCOVER_RESPONSE.Enum(),
			DiscoverResponse: &pb.Message_DiscoverResponse{Status: pb.Message_OK.Enum()},
		})
	})
	point := fmt.Sprintf("%s/p2p/%s", h.Addrs()[0], h.ID())
	key := filepath.Join(t.TempDir(), "lister.key")
	for _, tc := range []struct {
		flags []string
		want  uint64
	}{
		{[]string{"--limit", "0"}, client.DefaultDiscoverLimit},
		{nil, client.DefaultDiscoverLimit},
		{[]string{"--limit", "50"}, 50},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"--identity", key, "--point", point, "--all", "--json"}, tc.flags...)
		if code := discoverCmd(args, &stdout, &stderr); code != 0 {
			t.Fatalf("discover %v: exit %d: %s", tc.flags, code, stderr.String())
		}
		d := <-asked
		if d.Limit == nil || d.GetLimit() != tc.want || d.Ns != nil || d.Cookie != nil {
			t.Fatalf("discover %v sent limit %v, ns %v, cookie %v; want limit %d, no ns, no cookie", tc.flags, d.Limit, d.Ns, d.Cookie, tc.want)
		}
		if stdout.Len() != 0 {
			t.Fatalf("discover %v printed %q for no registration", tc.flags, stdout.String())
		}
	}
}
