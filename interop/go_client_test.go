package interop

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
)

// wideTTL lets the point decide: the JS server has no minimum.
var wideTTL = rendezvous.TTLPolicy{Min: time.Second, Max: 72 * time.Hour, Default: 2 * time.Hour}

func newGoClient(t *testing.T, points ...peer.AddrInfo) (*client.Client, peer.ID) {
	t.Helper()
	h := testhost.New(t)
	c, err := client.New(h, client.WithPoints(points...), client.WithTTLPolicy(wideTTL), client.WithRequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, h.ID()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGoClientAtJSServer(t *testing.T) {
	needJS(t)
	s := startJSServer(t)
	a, aID := newGoClient(t, s.info)
	b, _ := newGoClient(t, s.info)
	ctx := ctxT(t)

	// The JS server clamps TTLs to 2 h instead of refusing: the client
	// keeps what was granted.
	results, err := a.Register(ctx, "interop", 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].Err != nil || results[0].TTL != 2*time.Hour {
		t.Fatalf("results %+v, want 2h granted by the JS server", results)
	}
	found, _, err := b.Discover(ctx, "interop", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Peer.ID != aID || len(found[0].Peer.Addrs) == 0 || found[0].Namespace != "interop" {
		t.Fatalf("discovered %+v, want %s with addresses", found, aID)
	}
	if _, err := a.Unregister(ctx, "interop"); err != nil {
		t.Fatal(err)
	}
	regs, _, err := b.DiscoverAt(ctx, s.info.ID, "interop", 10, nil)
	if err != nil || len(regs) != 0 {
		t.Fatalf("after unregister: %d registrations, %v", len(regs), err)
	}
}

func TestGoClientRefreshesOnGrantedTTL(t *testing.T) {
	needJS(t)
	s := startJSServer(t, "--max-ttl", "2")
	a, aID := newGoClient(t, s.info)
	b, _ := newGoClient(t, s.info)
	ctx := ctxT(t)
	results, err := a.Register(ctx, "short", time.Hour)
	if err != nil || results[0].TTL != 2*time.Second {
		t.Fatalf("results %+v (%v), want 2s granted", results, err)
	}
	// Three granted TTLs: the registration must be there at every look.
	end := time.Now().Add(6 * time.Second)
	looks := 0
	for time.Now().Before(end) {
		regs, _, err := b.DiscoverAt(ctx, s.info.ID, "short", 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(regs) != 1 || regs[0].Peer.ID != aID || regs[0].TTL <= 0 {
			t.Fatalf("after %d looks: %+v, want %s kept alive", looks, regs, aID)
		}
		looks++
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("present at all %d looks over 3 TTLs", looks)
}

func TestGoClientReportsJSStreamResets(t *testing.T) {
	needJS(t)
	s := startJSServer(t)
	goPoint, goAddr := newGoPoint(t, rendezvous.ProtocolID)
	goInfo, err := peer.AddrInfoFromString(goAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newGoClient(t, s.info, *goInfo)
	ctx := ctxT(t)

	// The JS server resets the stream instead of answering
	// E_INVALID_COOKIE: a clear error naming the point.
	_, _, err = c.DiscoverAt(ctx, s.info.ID, "ns", 10, []byte{1, 2, 3})
	var rerr *rendezvous.Error
	if err == nil || errors.As(err, &rerr) || !strings.Contains(err.Error(), s.info.ID.String()) {
		t.Fatalf("bad cookie at the JS server: %v, want a transport error naming the point", err)
	}
	// The same connection still serves, and each point answers for itself.
	results, err := c.Register(ctx, "both", 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	granted := map[peer.ID]time.Duration{}
	for _, r := range results {
		if r.Err != nil {
			t.Fatalf("point %s: %v", r.Point, r.Err)
		}
		granted[r.Point] = r.TTL
	}
	if granted[s.info.ID] != 2*time.Hour || granted[goPoint.ID()] != 3*time.Hour {
		t.Fatalf("granted %v, want 2h by the JS server and 3h by ours", granted)
	}
}

func TestGoClientSurvivesJSPaging(t *testing.T) {
	needJS(t)
	s := startJSServer(t)
	ctx := ctxT(t)
	const peers = 12
	registered := map[peer.ID]bool{}
	for range peers {
		c, id := newGoClient(t, s.info)
		if _, err := c.Register(ctx, "paged", 2*time.Hour); err != nil {
			t.Fatal(err)
		}
		registered[id] = true
	}
	// Pages of 5: the JS server repeats the newest registrations on every
	// page and never reaches the older ones.
	observer, _ := newGoClient(t, s.info)
	seen := map[peer.ID]int{}
	calls := 0
	for calls < 10 {
		done := make(chan struct{})
		var found []client.Registration
		go func() {
			defer close(done)
			found, _, _ = observer.Discover(ctx, "paged", 5)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("Discover does not return: paging loops")
		}
		calls++
		if len(found) == 0 {
			break
		}
		for _, r := range found {
			if !registered[r.Peer.ID] {
				t.Fatalf("discovered %s, which never registered", r.Peer.ID)
			}
			seen[r.Peer.ID]++
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s returned %d times", id, n)
		}
	}
	if len(seen) == 0 || calls >= 10 {
		t.Fatalf("%d calls found %d peers", calls, len(seen))
	}
	t.Logf("%d of %d registered peers reached through the JS server's paging in %d calls, none twice", len(seen), peers, calls)
}
