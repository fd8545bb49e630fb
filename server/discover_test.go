package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store"
)

func TestDiscoverUnknownNamespace(t *testing.T) {
	p := newPoint(t)
	a := newPeer(t, p)
	a.mustRegister("known", 7200)
	r := a.discover("unknown", 0, nil)
	if r.GetStatus() != pb.Message_OK || r.Status == nil || len(r.GetRegistrations()) != 0 || r.Cookie == nil {
		t.Fatalf("got %v, want OK with no registrations and a cookie", r)
	}
}

func TestDiscoverAllNamespaces(t *testing.T) {
	p := newPoint(t)
	a, b := newPeer(t, p), newPeer(t, p)
	a.mustRegister("one", 7200)
	b.mustRegister("two", 7200)
	a.mustRegister("three", 7200)
	for _, ns := range []*string{nil, proto.String("")} {
		m := discoverMsg("", 0, nil)
		m.Discover.Ns = ns
		r := a.roundTrip(m).GetDiscoverResponse()
		var got []string
		for _, reg := range r.GetRegistrations() {
			got = append(got, reg.GetNs())
		}
		if len(got) != 3 || got[0] != "one" || got[1] != "two" || got[2] != "three" {
			t.Fatalf("ns=%v: got namespaces %v, want [one two three]", ns, got)
		}
		// The cookie of "every namespace" does not continue a namespace.
		if bad := a.discover("one", 0, r.GetCookie()); bad.GetStatus() != pb.Message_E_INVALID_COOKIE {
			t.Fatalf("all-namespace cookie in a namespace: %v", bad.GetStatus())
		}
	}
}

func TestDiscoverPagingAndPolling(t *testing.T) {
	p := newPoint(t)
	var want []peer.ID
	for range 11 {
		c := newPeer(t, p)
		c.mustRegister("ns", 7200)
		want = append(want, c.host.ID())
	}
	d := newPeer(t, p)
	var got []peer.ID
	var cookie []byte
	var sizes []int
	for range 4 {
		r := d.discover("ns", 5, cookie)
		sizes = append(sizes, len(r.GetRegistrations()))
		got = append(got, peersOf(t, r)...)
		cookie = r.GetCookie()
	}
	if len(sizes) != 4 || sizes[0] != 5 || sizes[1] != 5 || sizes[2] != 1 || sizes[3] != 0 {
		t.Fatalf("page sizes %v, want [5 5 1 0]", sizes)
	}
	if len(got) != 11 {
		t.Fatalf("got %d peers, want 11", len(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("peer %d is %s, want %s (registration order)", i, got[i], want[i])
		}
	}
	// Polling returns only what is new.
	late := newPeer(t, p)
	late.mustRegister("ns", 7200)
	newPeer(t, p).mustRegister("other", 7200)
	r := d.discover("ns", 5, cookie)
	if ids := peersOf(t, r); len(ids) != 1 || ids[0] != late.host.ID() {
		t.Fatalf("polling returned %v, want only %s", ids, late.host.ID())
	}
	if r2 := d.discover("ns", 5, r.GetCookie()); len(r2.GetRegistrations()) != 0 {
		t.Fatalf("polling again returned %d", len(r2.GetRegistrations()))
	}
}

func TestDiscoverLimitDefaultAndMax(t *testing.T) {
	rc := server.DefaultResources()
	rc.DefaultDiscoverLimit, rc.MaxDiscoverLimit = 2, 3
	p := newPoint(t, server.WithResources(rc))
	for range 5 {
		newPeer(t, p).mustRegister("ns", 7200)
	}
	d := newPeer(t, p)
	for _, tc := range []struct {
		limit uint64
		want  int
	}{{0, 2}, {1, 1}, {3, 3}, {1000, 3}} {
		if n := len(d.discover("ns", tc.limit, nil).GetRegistrations()); n != tc.want {
			t.Fatalf("limit %d: %d registrations, want %d", tc.limit, n, tc.want)
		}
	}
	m := discoverMsg("ns", 0, nil)
	m.Discover.Limit = nil
	if n := len(d.roundTrip(m).GetDiscoverResponse().GetRegistrations()); n != 2 {
		t.Fatalf("absent limit: %d registrations, want 2", n)
	}
}

func TestDiscoverInvalidCookies(t *testing.T) {
	p := newPoint(t)
	a := newPeer(t, p)
	a.mustRegister("a", 7200)
	a.mustRegister("b", 7200)
	cookieA := a.discover("a", 0, nil).GetCookie()
	seq := make([]byte, 8)
	binary.BigEndian.PutUint64(seq, 1)
	for _, tc := range []struct {
		name   string
		ns     string
		cookie []byte
	}{
		{"another namespace's", "b", cookieA},
		{"a namespace's, for every namespace", "", cookieA},
		{"too short", "a", []byte{1, 2, 3}},
		{"invalid UTF-8 namespace", "a", append(seq, 0xff)},
		{"prefix of the namespace", "ab", cookieA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.discover(tc.ns, 0, tc.cookie)
			if r.GetStatus() != pb.Message_E_INVALID_COOKIE || len(r.GetRegistrations()) != 0 || r.GetStatusText() == "" {
				t.Fatalf("got %v %q, want E_INVALID_COOKIE with a text", r.GetStatus(), r.GetStatusText())
			}
		})
	}
	if !bytes.Equal(cookieA[8:], []byte("a")) {
		t.Fatalf("cookie %x does not end with its namespace", cookieA)
	}
}

func TestDiscoverByteBudget(t *testing.T) {
	rc := server.DefaultResources()
	rc.MaxRecordSize = 2048
	rc.MaxDiscoverResponseSize = 4096
	p := newPoint(t, server.WithResources(rc))
	const n = 10
	var want []peer.ID
	for range n {
		c := newPeer(t, p)
		// Many addresses make records of about 1 KiB.
		addrs := c.host.Addrs()
		for i := range 40 {
			addrs = append(addrs, loopback(t)[0].Encapsulate(mustMA("/p2p-circuit")), mustMA("/ip4/127.0.0.1/tcp/"+itoa(10000+i)))
		}
		rec, err := rendezvous.SealPeerRecord(c.host.Peerstore().PrivKey(c.host.ID()), addrs[:40], 1)
		if err != nil {
			t.Fatal(err)
		}
		if r := c.roundTrip(registerMsg("ns", rec, proto.Uint64(7200))).GetRegisterResponse(); r.GetStatus() != pb.Message_OK {
			t.Fatalf("register: %v %q", r.GetStatus(), r.GetStatusText())
		}
		want = append(want, c.host.ID())
	}
	d := newPeer(t, p)
	var got []peer.ID
	var cookie []byte
	pages := 0
	for pages < 2*n {
		s := d.open()
		s.send(discoverMsg("ns", 100, cookie))
		m := s.recv()
		if size := proto.Size(m); size+3 > rc.MaxDiscoverResponseSize {
			t.Fatalf("response of %d bytes, over the %d-byte budget", size, rc.MaxDiscoverResponseSize)
		}
		r := m.GetDiscoverResponse()
		if len(r.GetRegistrations()) == 0 {
			break
		}
		pages++
		got = append(got, peersOf(t, r)...)
		cookie = r.GetCookie()
	}
	if pages < 2 {
		t.Fatalf("%d pages, want the budget to split the namespace in several", pages)
	}
	if len(got) != n {
		t.Fatalf("got %d peers over %d pages, want %d", len(got), pages, n)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("peer %d is %s, want %s", i, got[i], want[i])
		}
	}
}

func TestExpiry(t *testing.T) {
	rc := server.DefaultResources()
	rc.MinTTL = 60 * 1e9
	p := newPoint(t, server.WithResources(rc))
	a, b := newPeer(t, p), newPeer(t, p)
	a.mustRegister("ns", 60)
	b.mustRegister("ns", 7200)
	p.clock.Advance(59_500_000_000)
	r := b.discover("ns", 0, nil)
	if len(r.GetRegistrations()) != 2 || r.GetRegistrations()[0].GetTtl() != 1 {
		t.Fatalf("before expiry: %v", r.GetRegistrations())
	}
	p.clock.Advance(500_000_000)
	if ids := peersOf(t, b.discover("ns", 0, nil)); len(ids) != 1 || ids[0] != b.host.ID() {
		t.Fatalf("after expiry got %v, want only %s", ids, b.host.ID())
	}
	// The expired registration no longer counts against the peer cap.
	a.mustRegister("ns", 60)
}

func TestDiscoverPassesOverUnservableRegistration(t *testing.T) {
	p := newPoint(t)
	a, b := newPeer(t, p), newPeer(t, p)
	// Stored under larger limits than today's: it fits in no response.
	huge := store.Registration{Namespace: "ns", Peer: a.host.ID(), Record: make([]byte, 2*server.DefaultMaxDiscoverResponseSize), Expires: p.clock.Now().Add(time.Hour)}
	if _, err := p.store.Register(context.Background(), huge, store.Limits{}, p.clock.Now()); err != nil {
		t.Fatal(err)
	}
	b.mustRegister("ns", 7200)
	r := b.discover("ns", 0, nil)
	if ids := peersOf(t, r); len(ids) != 1 || ids[0] != b.host.ID() {
		t.Fatalf("got %v, want only %s past the unservable one", ids, b.host.ID())
	}
	if again := b.discover("ns", 0, r.GetCookie()); len(again.GetRegistrations()) != 0 {
		t.Fatalf("the cookie does not continue past it: %d more", len(again.GetRegistrations()))
	}
}
