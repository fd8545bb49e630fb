package memory

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/store"
)

// heldRecords is the number of distinct record copies s holds.
func heldRecords(s *Store) int {
	recs := map[*record]bool{}
	s.all.ascend(0, func(e *entry) bool {
		recs[e.rec] = true
		return true
	})
	return len(recs)
}

// recordIn is the record of p's registration in ns, as Discover gives it.
func recordIn(t *testing.T, s *Store, ns string, p peer.ID, now time.Time) []byte {
	t.Helper()
	regs, err := s.Discover(context.Background(), nil, ns, 0, 100, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range regs {
		if r.Peer == p {
			return r.Record
		}
	}
	t.Fatalf("%s not registered in %s", p, ns)
	return nil
}

// TestSharedRecords: a peer's identical records are held once across its
// namespaces; a changed record is served as the changed one where it was
// registered, the old one where it was not; a record no registration holds
// any more is no longer held, and nor is a peer with no registration.
func TestSharedRecords(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New()
	defer s.Close()
	const a, b = peer.ID("peer-a"), peer.ID("peer-b")
	register := func(ns string, p peer.ID, rec []byte, ttl time.Duration) {
		t.Helper()
		// Each REGISTER brings its own copy, which the caller may reuse.
		buf := append([]byte(nil), rec...)
		if _, err := s.Register(ctx, store.Registration{Namespace: ns, Peer: p, Record: buf, Expires: now.Add(ttl)}, store.Limits{}, now); err != nil {
			t.Fatal(err)
		}
		clear(buf)
	}
	want := func(ns string, p peer.ID, rec []byte) {
		t.Helper()
		if got := recordIn(t, s, ns, p, now); !bytes.Equal(got, rec) {
			t.Errorf("%s in %s: record %q, want %q", p, ns, got, rec)
		}
	}
	rec1, rec2 := []byte("record one"), []byte("record two")

	for _, ns := range []string{"ns1", "ns2", "ns3"} {
		register(ns, a, rec1, time.Hour)
	}
	register("ns1", b, rec1, time.Hour) // another peer's: not shared
	for _, ns := range []string{"ns1", "ns2", "ns3"} {
		want(ns, a, rec1)
	}
	if n := heldRecords(s); n != 2 {
		t.Errorf("%d records held for one peer's three identical ones and another peer's, want 2", n)
	}
	if &recordIn(t, s, "ns1", a, now)[0] != &recordIn(t, s, "ns3", a, now)[0] {
		t.Error("one peer's identical records in two namespaces are two copies")
	}

	register("ns2", a, rec2, time.Hour)
	want("ns1", a, rec1)
	want("ns2", a, rec2)
	want("ns3", a, rec1)
	if n := heldRecords(s); n != 3 {
		t.Errorf("%d records held after a changed one, want 3", n)
	}

	// Back to the first record in a namespace: served as registered.
	register("ns3", a, rec1, time.Hour)
	want("ns2", a, rec2)
	want("ns3", a, rec1)

	// Every namespace moves to the second record: the first is no longer
	// held. Only the record registered last is shared, so ns2 keeps its
	// copy and ns1 and ns3 share a new one.
	register("ns1", a, rec2, time.Hour)
	register("ns3", a, rec2, time.Hour)
	for _, ns := range []string{"ns1", "ns2", "ns3"} {
		want(ns, a, rec2)
	}
	if n := heldRecords(s); n != 3 {
		t.Errorf("%d records held after every namespace moved to one record, want 3", n)
	}
	// Refreshed with it, ns2 shares it too.
	register("ns2", a, rec2, time.Hour)
	if n := heldRecords(s); n != 2 {
		t.Errorf("%d records held after refreshing every namespace with one record, want 2", n)
	}

	for _, ns := range []string{"ns1", "ns2", "ns3"} {
		if err := s.Unregister(ctx, ns, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := s.peers[a]; ok || heldRecords(s) != 1 {
		t.Errorf("after unregistering everywhere: peer held %v, %d records held, want only b's", ok, heldRecords(s))
	}

	// Expiry frees as Unregister does.
	register("ns4", a, rec1, time.Minute)
	register("ns5", a, rec1, time.Minute)
	if _, err := s.Stats(ctx, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.peers[a]; ok || heldRecords(s) != 1 {
		t.Errorf("after expiry: peer held %v, %d records held, want only b's", ok, heldRecords(s))
	}
	if len(s.peers) != 1 {
		t.Errorf("%d peers held, want 1", len(s.peers))
	}
}

// TestSharedSources: a peer's registrations from one source share its
// copy; each is counted in the quotas of the source it came from, and
// uncounted when it goes.
func TestSharedSources(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New()
	defer s.Close()
	a1, a2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	register := func(ns string, src netip.Addr) {
		t.Helper()
		if _, err := s.Register(ctx, store.Registration{Namespace: ns, Peer: "peer-a", Record: []byte("r"), Expires: now.Add(time.Hour), Source: src}, store.Limits{}, now); err != nil {
			t.Fatal(err)
		}
	}
	counts := func(want1, want2 int) {
		t.Helper()
		in1, _ := s.sourceCounts(a1)
		in2, _ := s.sourceCounts(a2)
		if in1 != want1 || in2 != want2 {
			t.Errorf("registrations from %s, %s: %d, %d; want %d, %d", a1, a2, in1, in2, want1, want2)
		}
	}
	register("ns1", a1)
	register("ns2", a1)
	register("ns3", netip.Addr{})
	if h1, h2 := s.byKey[key{s.byNS["ns1"], s.peers["peer-a"]}], s.byKey[key{s.byNS["ns2"], s.peers["peer-a"]}]; h1.src != h2.src {
		t.Error("one peer's registrations from one source hold two copies of it")
	}
	counts(2, 0)
	register("ns2", a2) // a refresh from another source
	counts(1, 1)
	register("ns1", a2)
	counts(0, 2)
	if err := s.Unregister(ctx, "ns1", "peer-a"); err != nil {
		t.Fatal(err)
	}
	counts(0, 1)
	if _, err := s.Stats(ctx, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	counts(0, 0)
	if len(s.perSource) != 0 {
		t.Errorf("%d source prefixes counted in an empty store", len(s.perSource))
	}
}
