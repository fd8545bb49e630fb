package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
)

func TestRegisterThenDiscover(t *testing.T) {
	p := newPoint(t)
	a := newPeer(t, p)
	rec := a.record()
	resp := a.roundTrip(registerMsg("chat", rec, proto.Uint64(7200)))
	if resp.Type == nil || resp.GetType() != pb.Message_REGISTER_RESPONSE {
		t.Fatalf("type %v, want REGISTER_RESPONSE written", resp.Type)
	}
	rr := resp.GetRegisterResponse()
	if rr.Status == nil || rr.GetStatus() != pb.Message_OK || rr.Ttl == nil || rr.GetTtl() != 7200 || rr.StatusText == nil {
		t.Fatalf("register response %v, want status OK and ttl 7200 written", rr)
	}

	p.clock.Advance(100 * time.Second)
	b := newPeer(t, p)
	dr := b.discover("chat", 0, nil)
	if dr.Status == nil || dr.GetStatus() != pb.Message_OK || dr.Cookie == nil || dr.StatusText == nil {
		t.Fatalf("discover response %v, want status OK, status text and cookie written", dr)
	}
	if len(dr.GetRegistrations()) != 1 {
		t.Fatalf("%d registrations, want 1", len(dr.GetRegistrations()))
	}
	reg := dr.GetRegistrations()[0]
	if reg.Ns == nil || reg.GetNs() != "chat" || reg.Ttl == nil || reg.GetTtl() != 7100 || string(reg.GetSignedPeerRecord()) != string(rec) {
		t.Fatalf("registration ns=%v ttl=%v, want ns chat and remaining ttl 7100 with the record as sent", reg.Ns, reg.Ttl)
	}
}

func TestRegisterTTL(t *testing.T) {
	rc := server.DefaultResources()
	rc.MinTTL, rc.MaxTTL, rc.DefaultTTL = time.Minute, time.Hour, 10*time.Minute
	p := newPoint(t, server.WithResources(rc))
	a := newPeer(t, p)
	for _, tc := range []struct {
		name    string
		ttl     *uint64
		status  pb.Message_ResponseStatus
		granted uint64
	}{
		{"absent", nil, pb.Message_OK, 600},
		{"zero", proto.Uint64(0), pb.Message_OK, 600},
		{"min", proto.Uint64(60), pb.Message_OK, 60},
		{"max", proto.Uint64(3600), pb.Message_OK, 3600},
		{"below min", proto.Uint64(59), pb.Message_E_INVALID_TTL, 0},
		{"above max", proto.Uint64(3601), pb.Message_E_INVALID_TTL, 0},
		{"huge", proto.Uint64(1 << 63), pb.Message_E_INVALID_TTL, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.roundTrip(registerMsg("ns", a.record(), tc.ttl)).GetRegisterResponse()
			if r.GetStatus() != tc.status || r.Ttl == nil || r.GetTtl() != tc.granted {
				t.Fatalf("got %v ttl %v, want %v ttl %d", r.GetStatus(), r.Ttl, tc.status, tc.granted)
			}
			if tc.status != pb.Message_OK && r.GetStatusText() == "" {
				t.Fatal("refusal without a status text")
			}
		})
	}
}

func TestReRegisterReplaces(t *testing.T) {
	p := newPoint(t)
	a, b := newPeer(t, p), newPeer(t, p)
	a.mustRegister("ns", 7200)
	first := b.discover("ns", 0, nil)
	if len(first.GetRegistrations()) != 1 {
		t.Fatalf("%d registrations, want 1", len(first.GetRegistrations()))
	}
	if again := b.discover("ns", 0, first.GetCookie()); len(again.GetRegistrations()) != 0 {
		t.Fatalf("polling with the cookie returned %d registrations, want 0", len(again.GetRegistrations()))
	}
	a.mustRegister("ns", 10000)
	all := b.discover("ns", 0, nil)
	if len(all.GetRegistrations()) != 1 || all.GetRegistrations()[0].GetTtl() != 10000 {
		t.Fatalf("after re-registering: %v, want one registration with ttl 10000", all.GetRegistrations())
	}
	polled := b.discover("ns", 0, first.GetCookie())
	if got := peersOf(t, polled); len(got) != 1 || got[0] != a.host.ID() || polled.GetRegistrations()[0].GetTtl() != 10000 {
		t.Fatalf("poller saw %v, want the refreshed registration of %s", got, a.host.ID())
	}
}

func TestRegisterRecordValidation(t *testing.T) {
	p := newPoint(t)
	a := newPeer(t, p)
	other, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	ownKey := a.host.Peerstore().PrivKey(a.host.ID())

	signedByOther, _ := rendezvous.SealPeerRecord(other, a.host.Addrs(), 1)
	// A record about a but signed with another key: build it by hand.
	forged := forgeRecord(t, other, a.host.ID())
	noAddrs, _ := rendezvous.SealPeerRecord(ownKey, nil, 1)
	legacy, _ := rendezvous.SealLegacyPeerRecord(ownKey, a.host.Addrs(), 1)
	garbage := []byte("definitely not an envelope")
	tampered := append([]byte(nil), a.record()...)
	tampered[len(tampered)-1] ^= 1

	for _, tc := range []struct {
		name   string
		rec    []byte
		status pb.Message_ResponseStatus
	}{
		{"own record", a.record(), pb.Message_OK},
		{"legacy envelope", legacy, pb.Message_OK},
		{"record of another peer", signedByOther, pb.Message_E_INVALID_SIGNED_PEER_RECORD},
		{"record about us signed by another key", forged, pb.Message_E_INVALID_SIGNED_PEER_RECORD},
		{"bad signature", tampered, pb.Message_E_INVALID_SIGNED_PEER_RECORD},
		{"no addresses", noAddrs, pb.Message_E_INVALID_SIGNED_PEER_RECORD},
		{"empty", nil, pb.Message_E_INVALID_SIGNED_PEER_RECORD},
		{"garbage", garbage, pb.Message_E_INVALID_SIGNED_PEER_RECORD},
		{"oversized", append(a.record(), make([]byte, rendezvous.DefaultMaxRecordSize)...), pb.Message_E_INVALID_SIGNED_PEER_RECORD},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.roundTrip(registerMsg("ns-"+tc.name, tc.rec, proto.Uint64(7200))).GetRegisterResponse()
			if r.GetStatus() != tc.status {
				t.Fatalf("got %v %q, want %v", r.GetStatus(), r.GetStatusText(), tc.status)
			}
			found := newPeer(t, p).discover("ns-"+tc.name, 0, nil)
			if want := tc.status == pb.Message_OK; (len(found.GetRegistrations()) == 1) != want {
				t.Fatalf("stored %d registrations, want stored=%v", len(found.GetRegistrations()), want)
			}
		})
	}
}

func TestRegisterNamespaceLength(t *testing.T) {
	p := newPoint(t)
	a := newPeer(t, p)
	for _, tc := range []struct {
		name   string
		ns     string
		status pb.Message_ResponseStatus
	}{
		{"255 bytes", strings.Repeat("a", 255), pb.Message_OK},
		{"256 bytes", strings.Repeat("a", 256), pb.Message_E_INVALID_NAMESPACE},
		{"85 three-byte runes", strings.Repeat("€", 85), pb.Message_OK},
		{"86 three-byte runes", strings.Repeat("€", 86), pb.Message_E_INVALID_NAMESPACE},
		{"empty", "", pb.Message_E_INVALID_NAMESPACE},
		{"invalid UTF-8", "ns\xff", pb.Message_E_INVALID_NAMESPACE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := a.register(tc.ns, 7200); r.GetStatus() != tc.status {
				t.Fatalf("got %v %q, want %v", r.GetStatus(), r.GetStatusText(), tc.status)
			}
		})
	}
}

func TestRegisterWithoutType(t *testing.T) {
	p := newPoint(t)
	a := newPeer(t, p)
	m := registerMsg("ns", a.record(), proto.Uint64(7200))
	m.Type = nil
	resp := a.roundTrip(m)
	if resp.GetType() != pb.Message_REGISTER_RESPONSE || resp.GetRegisterResponse().GetStatus() != pb.Message_OK {
		t.Fatalf("got %v", resp)
	}
	if got := peersOf(t, a.discover("ns", 0, nil)); len(got) != 1 {
		t.Fatalf("registered %d, want 1", len(got))
	}
}

func TestPeerCap(t *testing.T) {
	rc := unlimited(server.DefaultResources())
	p := newPoint(t, server.WithResources(rc))
	a := newPeer(t, p)
	rec := a.record()
	s := a.open()
	// Pipelined on one stream: 1000 accepted, the 1001st refused.
	for i := range rc.MaxRegistrationsPerPeer + 1 {
		s.send(registerMsg(nsN(i), rec, proto.Uint64(7200)))
	}
	for i := range rc.MaxRegistrationsPerPeer + 1 {
		r := s.recv().GetRegisterResponse()
		want := pb.Message_OK
		if i == rc.MaxRegistrationsPerPeer {
			want = pb.Message_E_NOT_AUTHORIZED
		}
		if r.GetStatus() != want {
			t.Fatalf("registration %d: %v %q, want %v", i+1, r.GetStatus(), r.GetStatusText(), want)
		}
	}
	// A refresh at the cap is accepted.
	s.send(registerMsg(nsN(500), rec, proto.Uint64(9000)))
	if r := s.recv().GetRegisterResponse(); r.GetStatus() != pb.Message_OK || r.GetTtl() != 9000 {
		t.Fatalf("refresh at the cap: %v", r)
	}
	// Another peer is not affected.
	b := newPeer(t, p)
	b.mustRegister(nsN(1000), 7200)
}

func nsN(i int) string {
	return "ns-" + strings.Repeat("x", i%7) + "-" + string(rune('a'+i%26)) + "-" + itoa(i)
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func TestCapacityLimits(t *testing.T) {
	rc := server.DefaultResources()
	rc.MaxRegistrations = 2
	rc.MaxNamespaces = 2
	p := newPoint(t, server.WithResources(rc))
	a, b, c := newPeer(t, p), newPeer(t, p), newPeer(t, p)
	a.mustRegister("one", 7200)
	b.mustRegister("two", 7200)
	if r := c.register("one", 7200); r.GetStatus() != pb.Message_E_UNAVAILABLE {
		t.Fatalf("beyond the total cap: %v, want E_UNAVAILABLE", r.GetStatus())
	}
	a.mustRegister("one", 7200) // a refresh still works when full

	rc.MaxRegistrations = 10
	p2 := newPoint(t, server.WithResources(rc))
	d, e := newPeer(t, p2), newPeer(t, p2)
	d.mustRegister("one", 7200)
	d.mustRegister("two", 7200)
	if r := e.register("three", 7200); r.GetStatus() != pb.Message_E_UNAVAILABLE {
		t.Fatalf("beyond the namespace cap: %v, want E_UNAVAILABLE", r.GetStatus())
	}
	e.mustRegister("two", 7200)
}

type denyNamespace string

func (d denyNamespace) AllowRegister(_ peer.ID, ns string) bool { return ns != string(d) }
func (d denyNamespace) AllowDiscover(_ peer.ID, ns string) bool { return ns != string(d) }

func TestACL(t *testing.T) {
	p := newPoint(t, server.WithACL(denyNamespace("secret")))
	a := newPeer(t, p)
	if r := a.register("secret", 7200); r.GetStatus() != pb.Message_E_NOT_AUTHORIZED {
		t.Fatalf("register: %v, want E_NOT_AUTHORIZED", r.GetStatus())
	}
	if r := a.discover("secret", 0, nil); r.GetStatus() != pb.Message_E_NOT_AUTHORIZED {
		t.Fatalf("discover: %v, want E_NOT_AUTHORIZED", r.GetStatus())
	}
	a.mustRegister("public", 7200)
}
