package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/client"
)

// regKey is one (peer, namespace) registration.
type regKey struct {
	peer peer.ID
	ns   string
}

// crashClient is one client host, its own peer, with its client.
type crashClient struct {
	h host.Host
	c *client.Client
}

func newCrashClient(ctx context.Context, t *testing.T, point peer.AddrInfo) *crashClient {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	if err := h.Connect(ctx, point); err != nil {
		t.Fatalf("connecting to %s: %v", point.ID, err)
	}
	c, err := client.New(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &crashClient{h: h, c: c}
}

// discoverFrom pages through DISCOVER of ns at point, from cookie until a
// page comes back empty, and returns what it found, in order, and the cookie
// to continue with.
func discoverFrom(ctx context.Context, t *testing.T, c *client.Client, point peer.ID, ns string, cookie []byte) ([]regKey, []byte) {
	t.Helper()
	var found []regKey
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatalf("DISCOVER of %q still returning registrations after %d pages", ns, page)
		}
		regs, next, err := c.DiscoverAt(ctx, point, ns, 0, cookie)
		if err != nil {
			t.Fatalf("DISCOVER of %q, page %d: %v", ns, page, err)
		}
		if len(next) > 0 {
			cookie = next
		}
		if len(regs) == 0 {
			return found, cookie
		}
		for _, r := range regs {
			found = append(found, regKey{r.Peer.ID, r.Namespace})
		}
	}
}

func crashNS(i int) string { return fmt.Sprintf("crash-%03d", i) }

// TestCrashKeepsAcknowledgedRegistrations kills `rendezvous serve` (the
// embedded store) with SIGKILL in the middle of a storm of REGISTERs from
// several peers, restarts it on the same data directory, and checks that
// every REGISTER answered OK before the kill is served, and that a cookie
// handed out before the crash continues, after it, with exactly the
// registrations acknowledged after the cookie. It does so with each
// --embedded-sync: under normal, commits reach the disk later, but a crash
// of the process alone loses none of them.
func TestCrashKeepsAcknowledgedRegistrations(t *testing.T) {
	for _, mode := range []string{"full", "normal"} {
		t.Run(mode, func(t *testing.T) { testCrashKeepsAcknowledged(t, mode) })
	}
}

func testCrashKeepsAcknowledged(t *testing.T, syncMode string) {
	const (
		hosts          = 8   // client peers
		workersPerHost = 4   // REGISTERs each peer has in flight
		firstBatch     = 4   // namespaces per peer registered before the cookie
		nsPerHost      = 250 // namespaces per peer in all
		killAfter      = 200 // acknowledgements of the storm before the kill
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	// Every client is on 127.0.0.1: trusting loopback lifts the per-source
	// quotas and rates, which would hold a storm from one address.
	args := []string{"--data-dir", dataDir, "--listen", "/ip4/127.0.0.1/tcp/0", "--allow-prefix", "127.0.0.0/8", "--embedded-sync", syncMode}
	d := startServe(t, args...)
	point, err := peer.AddrInfoFromP2pAddr(d.addrs[0])
	if err != nil {
		t.Fatal(err)
	}

	clients := make([]*crashClient, hosts)
	for i := range clients {
		clients[i] = newCrashClient(ctx, t, *point)
	}
	reader := newCrashClient(ctx, t, *point)

	// The first batch, every REGISTER answered before the cookie is taken.
	before := map[regKey]bool{}
	for _, cc := range clients {
		for k := range firstBatch {
			if _, err := cc.c.RegisterAt(ctx, point.ID, crashNS(k), 0); err != nil {
				t.Fatalf("first batch: %v", err)
			}
			before[regKey{cc.h.ID(), crashNS(k)}] = true
		}
	}
	found, cookie := discoverFrom(ctx, t, reader.c, point.ID, "", nil)
	if len(found) != len(before) {
		t.Fatalf("before the crash, DISCOVER of every namespace found %d registrations, want %d", len(found), len(before))
	}
	for _, k := range found {
		if !before[k] {
			t.Fatalf("before the crash, DISCOVER found %v, never registered", k)
		}
	}

	// The storm: every peer registers in its other namespaces, several at
	// a time; the kill comes from another goroutine on the killAfter-th
	// acknowledgement.
	var (
		mu       sync.Mutex
		acked    = map[regKey]bool{}
		sent     = map[regKey]bool{}
		failed   int
		killed   atomic.Bool
		ackCount atomic.Int64
		killNow  = make(chan struct{})
		killOnce sync.Once
	)
	killDone := make(chan struct{})
	go func() {
		defer close(killDone)
		select {
		case <-killNow:
		case <-ctx.Done():
			return
		}
		killed.Store(true)
		if err := d.cmd.Process.Kill(); err != nil {
			t.Errorf("SIGKILL: %v", err)
		}
	}()
	var wg sync.WaitGroup
	for _, cc := range clients {
		next := atomic.Int64{}
		next.Store(firstBatch)
		for range workersPerHost {
			wg.Go(func() {
				for {
					k := int(next.Add(1) - 1)
					if k >= nsPerHost || killed.Load() {
						return
					}
					key := regKey{cc.h.ID(), crashNS(k)}
					mu.Lock()
					sent[key] = true
					mu.Unlock()
					_, err := cc.c.RegisterAt(ctx, point.ID, key.ns, 0)
					if err != nil {
						mu.Lock()
						failed++
						mu.Unlock()
						if !killed.Load() {
							t.Errorf("REGISTER %v before the kill: %v", key, err)
						}
						return
					}
					mu.Lock()
					acked[key] = true
					mu.Unlock()
					if ackCount.Add(1) == killAfter {
						killOnce.Do(func() { close(killNow) })
					}
				}
			})
		}
	}
	wg.Wait()
	killOnce.Do(func() { close(killNow) }) // should the storm end first
	<-killDone
	select {
	case <-d.done:
	case <-ctx.Done():
		t.Fatal("serve did not exit after SIGKILL")
	}
	if t.Failed() {
		return
	}
	if len(acked) < killAfter {
		t.Fatalf("%d REGISTERs acknowledged before the kill, want at least %d", len(acked), killAfter)
	}
	if failed == 0 {
		t.Fatalf("no REGISTER was in flight at the kill (%d acknowledged of %d sent)", len(acked), len(sent))
	}

	// Restart on the same data directory: same identity, same store.
	d2 := startServe(t, args...)
	point2, err := peer.AddrInfoFromP2pAddr(d2.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	if point2.ID != point.ID {
		t.Fatalf("restarted point is %s, was %s", point2.ID, point.ID)
	}
	reader2 := newCrashClient(ctx, t, *point2)

	// Every acknowledged registration is there, in every namespace and in
	// its own.
	all, _ := discoverFrom(ctx, t, reader2.c, point.ID, "", nil)
	present := map[regKey]bool{}
	for _, k := range all {
		if present[k] {
			t.Errorf("after the restart, %v discovered twice", k)
		}
		present[k] = true
		if !before[k] && !sent[k] {
			t.Errorf("after the restart, %v discovered, never registered", k)
		}
	}
	missing := 0
	for k := range before {
		if !present[k] {
			missing++
			t.Errorf("after the restart, acknowledged registration %v (first batch) is lost", k)
		}
	}
	for k := range acked {
		if !present[k] {
			missing++
			if missing < 10 {
				t.Errorf("after the restart, acknowledged registration %v is lost", k)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d acknowledged registrations lost in the crash", missing)
	}
	perNS := 0
	for k := range nsPerHost {
		regs, _ := discoverFrom(ctx, t, reader2.c, point.ID, crashNS(k), nil)
		perNS += len(regs)
	}
	if perNS != len(all) {
		t.Errorf("namespace by namespace, %d registrations; in every namespace, %d", perNS, len(all))
	}
	inflightPresent := 0
	for k := range sent {
		if !acked[k] && present[k] {
			inflightPresent++
		}
	}

	// The cookie taken before the crash continues with the storm's
	// registrations: every acknowledged one, none of the first batch, none
	// twice.
	after, _ := discoverFrom(ctx, t, reader2.c, point.ID, "", cookie)
	seen := map[regKey]bool{}
	for _, k := range after {
		switch {
		case before[k]:
			t.Errorf("the pre-crash cookie repeats %v, discovered before it", k)
		case seen[k]:
			t.Errorf("the pre-crash cookie gives %v twice", k)
		case !sent[k]:
			t.Errorf("the pre-crash cookie gives %v, never registered", k)
		}
		seen[k] = true
	}
	gaps := 0
	for k := range acked {
		if !seen[k] {
			gaps++
		}
	}
	if gaps > 0 {
		t.Errorf("the pre-crash cookie skips %d acknowledged registrations", gaps)
	}
	t.Logf("first batch %d; storm: %d sent, %d acknowledged before the kill, %d failed at the kill; after the restart: %d found (%d in-flight unacknowledged present), %d via the pre-crash cookie",
		len(before), len(sent), len(acked), failed, len(all), inflightPresent, len(after))
}
