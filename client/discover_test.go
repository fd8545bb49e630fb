package client_test

import (
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// foreignRegs returns n registrations in ns of peers of their own, as a
// point sends them.
func foreignRegs(t *testing.T, ns string, n int) []*pb.Message_Register {
	t.Helper()
	var out []*pb.Message_Register
	for i := range n {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := rendezvous.SealPeerRecord(key, []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 1000+i))}, 1)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &pb.Message_Register{Ns: proto.String(ns), SignedPeerRecord: rec, Ttl: proto.Uint64(3600)})
	}
	return out
}

func discoverResponse(status pb.Message_ResponseStatus, cookie []byte, regs ...*pb.Message_Register) *pb.Message {
	return &pb.Message{
		Type: pb.Message_DISCOVER_RESPONSE.Enum(),
		DiscoverResponse: &pb.Message_DiscoverResponse{
			Registrations: regs,
			Cookie:        cookie,
			Status:        status.Enum(),
			StatusText:    proto.String(""),
		},
	}
}

func peersOf(regs []client.Registration) map[peer.ID]client.Registration {
	out := make(map[peer.ID]client.Registration, len(regs))
	for _, r := range regs {
		out[r.Peer.ID] = r
	}
	return out
}

// TestDiscoverDeduplicatesAcrossPoints: a peer found at two points is
// returned once, with the record of higher seq, then the longer TTL.
func TestDiscoverDeduplicatesAcrossPoints(t *testing.T) {
	checkLeaks(t)
	pa, pb := newPoint(t), newPoint(t)
	ctx := ctxFor(t, 30*time.Second)

	// x registered at pa with an old record, at pb with a newer one.
	var addr atomic.Pointer[ma.Multiaddr]
	old, newer := ma.StringCast("/ip4/127.0.0.1/tcp/1111"), ma.StringCast("/ip4/127.0.0.1/tcp/2222")
	addr.Store(&old)
	x, hx := newClient(t, client.WithPoints(info(pa), info(pb)), client.WithAddrs(func() []ma.Multiaddr { return []ma.Multiaddr{*addr.Load()} }))
	if _, err := x.RegisterAt(ctx, pa.ID(), "dedup", time.Hour); err != nil {
		t.Fatal(err)
	}
	addr.Store(&newer)
	if _, err := x.RegisterAt(ctx, pb.ID(), "dedup", time.Hour); err != nil {
		t.Fatal(err)
	}
	// y registered with the same record at both, for longer at pb.
	y, hy := newClient(t, client.WithPoints(info(pa), info(pb)))
	if _, err := y.RegisterAt(ctx, pb.ID(), "dedup", 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := y.RegisterAt(ctx, pa.ID(), "dedup", time.Hour); err != nil {
		t.Fatal(err)
	}

	for _, order := range [][]peer.AddrInfo{{info(pa), info(pb)}, {info(pb), info(pa)}} {
		obs, _ := newClient(t, client.WithPoints(order...))
		regs, _, err := obs.Discover(ctx, "dedup", 0)
		if err != nil {
			t.Fatal(err)
		}
		got := peersOf(regs)
		if len(regs) != 2 || len(got) != 2 {
			t.Fatalf("discovered %d registrations of %d peers, want 2 of 2", len(regs), len(got))
		}
		if r := got[hx.ID()]; len(r.Peer.Addrs) != 1 || !r.Peer.Addrs[0].Equal(newer) || r.Point != pb.ID() {
			t.Fatalf("x: %v from %s, want the newer record from %s", r.Peer.Addrs, r.Point, pb.ID())
		}
		if r := got[hy.ID()]; r.TTL <= 2*time.Hour || r.Point != pb.ID() {
			t.Fatalf("y: TTL %v from %s, want the 3h registration of %s", r.TTL, r.Point, pb.ID())
		}
	}
}

// TestDiscoverReturnsOnlyWhatIsNew: the second Discover returns only the
// peers registered since, and a refresh with the same record is not new.
func TestDiscoverReturnsOnlyWhatIsNew(t *testing.T) {
	checkLeaks(t)
	point := newPoint(t)
	ctx := ctxFor(t, 30*time.Second)
	obs, hobs := newClient(t, client.WithPoints(info(point)))
	if _, err := obs.Register(ctx, "new", time.Hour); err != nil {
		t.Fatal(err)
	}
	var ids []peer.ID
	var clients []*client.Client
	for range 3 {
		c, h := newClient(t, client.WithPoints(info(point)))
		clients = append(clients, c)
		ids = append(ids, h.ID())
	}
	for _, c := range clients[:2] {
		if _, err := c.Register(ctx, "new", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	regs, _, err := obs.Discover(ctx, "new", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := peersOf(regs)
	if len(regs) != 2 || got[ids[0]].Peer.ID == "" || got[ids[1]].Peer.ID == "" || got[hobs.ID()].Peer.ID != "" {
		t.Fatalf("first Discover: %v, want the two others and not ourselves", got)
	}
	// Refreshing with the same record is not news.
	if _, err := clients[0].Register(ctx, "new", time.Hour); err != nil {
		t.Fatal(err)
	}
	if regs, _, err := obs.Discover(ctx, "new", 0); err != nil || len(regs) != 0 {
		t.Fatalf("second Discover: %v %v, want nothing new", regs, err)
	}
	if _, err := clients[2].Register(ctx, "new", time.Hour); err != nil {
		t.Fatal(err)
	}
	regs, _, err = obs.Discover(ctx, "new", 0)
	if err != nil || len(regs) != 1 || regs[0].Peer.ID != ids[2] {
		t.Fatalf("third Discover: %v %v, want only the newcomer", regs, err)
	}
}

// TestDiscoverLimitCarriesOver: with a limit, what is left over comes with
// the next call, and nothing twice.
func TestDiscoverLimitCarriesOver(t *testing.T) {
	checkLeaks(t)
	pa, pb := newPoint(t), newPoint(t)
	ctx := ctxFor(t, 30*time.Second)
	want := map[peer.ID]bool{}
	for range 5 {
		c, h := newClient(t, client.WithPoints(info(pa), info(pb)))
		want[h.ID()] = true
		for _, p := range []peer.ID{pa.ID(), pb.ID()} {
			if _, err := c.RegisterAt(ctx, p, "limit", time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	obs, _ := newClient(t, client.WithPoints(info(pa), info(pb)))
	got := map[peer.ID]bool{}
	for i := range 5 {
		regs, _, err := obs.Discover(ctx, "limit", 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(regs) > 2 {
			t.Fatalf("call %d returned %d registrations, over the limit", i, len(regs))
		}
		for _, r := range regs {
			if got[r.Peer.ID] {
				t.Fatalf("call %d returned %s again", i, r.Peer.ID)
			}
			got[r.Peer.ID] = true
		}
	}
	if len(got) != len(want) {
		t.Fatalf("found %d peers in 5 calls of 2, want %d", len(got), len(want))
	}
}

// TestDiscoverEveryNamespace: ns "" finds the registrations of every
// namespace.
func TestDiscoverEveryNamespace(t *testing.T) {
	checkLeaks(t)
	point := newPoint(t)
	ctx := ctxFor(t, 30*time.Second)
	a, ha := newClient(t, client.WithPoints(info(point)))
	b, hb := newClient(t, client.WithPoints(info(point)))
	for _, r := range []struct {
		c  *client.Client
		ns string
	}{{a, "x"}, {a, "y"}, {b, "y"}} {
		if _, err := r.c.Register(ctx, r.ns, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	obs, _ := newClient(t, client.WithPoints(info(point)))
	regs, _, err := obs.Discover(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range regs {
		got[r.Namespace+" "+r.Peer.ID.String()] = true
	}
	if len(regs) != 3 || !got["x "+ha.ID().String()] || !got["y "+ha.ID().String()] || !got["y "+hb.ID().String()] {
		t.Fatalf("discovered %v, want a in x and y, b in y", got)
	}
}

// TestDiscoverPagingGuards: a point that pages wrongly makes Discover stop,
// not loop, and no peer comes twice.
func TestDiscoverPagingGuards(t *testing.T) {
	const maxPages = 4
	pool := foreignRegs(t, "page", 2*maxPages)
	for _, tc := range []struct {
		name         string
		answer       func(n int) *pb.Message
		wantPeers    int
		wantRequests int
	}{{
		name: "the same page with a new cookie",
		answer: func(n int) *pb.Message {
			return discoverResponse(pb.Message_OK, []byte(fmt.Sprint("cookie", n)), pool[0], pool[1])
		},
		wantPeers:    2,
		wantRequests: 2,
	}, {
		name:         "new peers with an unchanged cookie",
		answer:       func(n int) *pb.Message { return discoverResponse(pb.Message_OK, []byte("cookie"), pool[n]) },
		wantPeers:    2,
		wantRequests: 2,
	}, {
		name: "new peers with cookies that cycle",
		answer: func(n int) *pb.Message {
			return discoverResponse(pb.Message_OK, []byte(fmt.Sprint("cookie", n%2)), pool[n])
		},
		wantPeers:    3,
		wantRequests: 3,
	}, {
		name: "new peers and new cookies forever",
		answer: func(n int) *pb.Message {
			return discoverResponse(pb.Message_OK, []byte(fmt.Sprint("cookie", n)), pool[n])
		},
		wantPeers:    maxPages,
		wantRequests: maxPages,
	}, {
		name:         "no cookie",
		answer:       func(n int) *pb.Message { return discoverResponse(pb.Message_OK, nil, pool[n]) },
		wantPeers:    1,
		wantRequests: 1,
	}, {
		name:         "E_INVALID_NAMESPACE",
		answer:       func(int) *pb.Message { return discoverResponse(pb.Message_E_INVALID_NAMESPACE, nil) },
		wantPeers:    0,
		wantRequests: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			sp := newScriptedPoint(t, func(n int, _ *pb.Message) *pb.Message { return tc.answer(n) })
			c, _ := newClient(t, client.WithPoints(info(sp)), client.WithMaxPages(maxPages))
			regs, results, err := c.Discover(ctxFor(t, 30*time.Second), "page", 0)
			if err != nil || results.Err() != nil {
				t.Fatalf("Discover: %v %v", err, results.Err())
			}
			if len(regs) != tc.wantPeers || len(peersOf(regs)) != tc.wantPeers {
				t.Fatalf("%d registrations of %d peers, want %d", len(regs), len(peersOf(regs)), tc.wantPeers)
			}
			if n := sp.requests(); n != tc.wantRequests {
				t.Fatalf("%d DISCOVER requests, want %d", n, tc.wantRequests)
			}
		})
	}
}
