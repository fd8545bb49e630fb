package server_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
)

// identity is a peer that talks to a point through its request path, with
// a record signed once.
type identity struct {
	id  peer.ID
	rec []byte
}

// identities makes n identities, on every core: signing is the slow part of
// a test at the scale of an attack.
func identities(t testing.TB, n int) []identity {
	t.Helper()
	out := make([]identity, n)
	var wg sync.WaitGroup
	var failed atomic.Bool
	const workers = 4
	addrs := []ma.Multiaddr{ma.StringCast("/ip4/203.0.113.9/tcp/4001")}
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				key, _, err := crypto.GenerateEd25519Key(nil)
				if err != nil {
					failed.Store(true)
					return
				}
				id, _ := peer.IDFromPrivateKey(key)
				rec, err := rendezvous.SealPeerRecord(key, addrs, 1)
				if err != nil {
					failed.Store(true)
					return
				}
				out[i] = identity{id: id, rec: rec}
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		t.Fatal("making identities failed")
	}
	return out
}

// ask sends m as id from src through the point's request path.
func (p *point) ask(id identity, src string, m *pb.Message) *pb.Message {
	resp, _ := p.server.HandleRequest(context.Background(), server.Request{Message: m, Peer: id.id, Source: netip.MustParseAddr(src)})
	return resp
}

func (p *point) registerAs(id identity, src, ns string) *pb.Message_RegisterResponse {
	return p.ask(id, src, registerMsg(ns, id.rec, proto.Uint64(7200))).GetRegisterResponse()
}

// noRates is rc with the per-source rates out of the way, for tests of the
// quotas alone.
func noRates(rc server.Resources) server.Resources {
	q := unlimited(rc)
	q.MaxRegistrationsPerIPv4, q.MaxRegistrationsPerIPv4Net = rc.MaxRegistrationsPerIPv4, rc.MaxRegistrationsPerIPv4Net
	q.MaxRegistrationsPerIPv6Subnet, q.MaxRegistrationsPerIPv6Net = rc.MaxRegistrationsPerIPv6Subnet, rc.MaxRegistrationsPerIPv6Net
	return q
}

// TestQuotasRefuseWithTheirName: each quota, reached from its prefix, is
// refused E_NOT_AUTHORIZED with a text naming it, while the next prefix
// registers.
func TestQuotasRefuseWithTheirName(t *testing.T) {
	rc := noRates(server.DefaultResources())
	rc.MaxRegistrationsPerIPv4, rc.MaxRegistrationsPerIPv4Net = 2, 3
	rc.MaxRegistrationsPerIPv6Subnet, rc.MaxRegistrationsPerIPv6Net = 2, 3
	reg := prometheus.NewRegistry()
	p := newPoint(t, server.WithResources(rc), server.WithMetricsTracer(server.NewMetricsTracer(reg)))
	ids := identities(t, 40)
	next := 0
	id := func() identity { next++; return ids[next-1] }
	for _, tc := range []struct {
		name    string
		fill    []string
		refused string
		text    string
		other   string
	}{
		{"IPv4 address", []string{"192.0.2.1", "192.0.2.1"}, "192.0.2.1", "quota: 2 live registrations per IPv4 /32 reached", "192.0.2.2"},
		{"IPv4 /24", []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"}, "198.51.100.4", "quota: 3 live registrations per IPv4 /24 reached", "198.51.101.1"},
		{"IPv6 /64", []string{"2001:db8:1:1::1", "2001:db8:1:1::2"}, "2001:db8:1:1::3", "quota: 2 live registrations per IPv6 /64 reached", "2001:db8:1:2::1"},
		{"IPv6 /48", []string{"2001:db8:2:1::1", "2001:db8:2:2::1", "2001:db8:2:3::1"}, "2001:db8:2:4::1", "quota: 3 live registrations per IPv6 /48 reached", "2001:db8:3::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, src := range tc.fill {
				if r := p.registerAs(id(), src, "ns"); r.GetStatus() != pb.Message_OK {
					t.Fatalf("from %s: %v %q", src, r.GetStatus(), r.GetStatusText())
				}
			}
			r := p.registerAs(id(), tc.refused, "ns")
			if r.GetStatus() != pb.Message_E_NOT_AUTHORIZED || r.GetStatusText() != tc.text {
				t.Fatalf("beyond the quota: %v %q, want E_NOT_AUTHORIZED %q", r.GetStatus(), r.GetStatusText(), tc.text)
			}
			if r := p.registerAs(id(), tc.other, "ns"); r.GetStatus() != pb.Message_OK {
				t.Fatalf("another prefix: %v %q", r.GetStatus(), r.GetStatusText())
			}
		})
	}
	want := map[string]float64{"REGISTER/quota_ipv4": 1, "REGISTER/quota_ipv4_24": 1, "REGISTER/quota_ipv6_64": 1, "REGISTER/quota_ipv6_48": 1}
	if got := refusals(t, reg); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("refusals counted %v, want %v", got, want)
	}
}

// TestAttackerOf10000Identities: 10,000 identities from one /24, at the
// default quotas, get exactly the /24's quota, 5000, and no address more
// than its own; peers from other sources register, refresh and discover
// throughout, and none of their requests fails. Rates are out of the way:
// this is the quotas' test.
func TestAttackerOf10000Identities(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 signed records")
	}
	rc := noRates(server.DefaultResources())
	p := newPoint(t, server.WithResources(rc))
	const attackers, honest = 10_000, 64
	ids := identities(t, attackers+honest)
	attack, good := ids[:attackers], ids[attackers:]
	// The first 2000 from one address, which holds 1000 of them; the rest
	// from nine more of the /24.
	attackSource := func(i int) string {
		if i < 2000 {
			return "198.51.100.1"
		}
		return fmt.Sprintf("198.51.100.%d", 2+i%9)
	}
	goodSource := func(i int) string {
		if i%2 == 0 {
			return fmt.Sprintf("192.0.%d.1", i) // a /24 each
		}
		return fmt.Sprintf("2001:db8:%x::1", i) // a /48 each
	}

	var accepted, perAddress = 0, map[string]int{}
	texts := map[string]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, id := range attack {
			r := p.registerAs(id, attackSource(i), "chat")
			switch r.GetStatus() {
			case pb.Message_OK:
				accepted++
				perAddress[attackSource(i)]++
			case pb.Message_E_NOT_AUTHORIZED:
				texts[r.GetStatusText()]++
			default:
				t.Errorf("attacker %d: %v %q", i, r.GetStatus(), r.GetStatusText())
				return
			}
		}
	}()

	// The honest peers: half register at once, the others join one per
	// round; every round each refreshes and discovers.
	joined := honest / 2
	for i := range joined {
		if r := p.registerAs(good[i], goodSource(i), "chat"); r.GetStatus() != pb.Message_OK {
			t.Fatalf("honest %d: %v %q", i, r.GetStatus(), r.GetStatusText())
		}
	}
	rounds := 0
	for running := true; running && rounds < 10_000; rounds++ {
		select {
		case <-done:
			running = false
		default:
		}
		if joined < honest {
			joined++
		}
		for i := range joined {
			if r := p.registerAs(good[i], goodSource(i), "chat"); r.GetStatus() != pb.Message_OK {
				t.Fatalf("round %d: honest %d refreshing: %v %q", rounds, i, r.GetStatus(), r.GetStatusText())
			}
		}
		d := p.ask(good[rounds%joined], goodSource(rounds%joined), discoverMsg("chat", 100, nil)).GetDiscoverResponse()
		if d.GetStatus() != pb.Message_OK {
			t.Fatalf("round %d: discover: %v %q", rounds, d.GetStatus(), d.GetStatusText())
		}
	}
	<-done
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d honest rounds during the attack; refusals: %v", rounds, texts)
	if accepted != rc.MaxRegistrationsPerIPv4Net {
		t.Fatalf("attacker got %d registrations, want the /24 quota %d", accepted, rc.MaxRegistrationsPerIPv4Net)
	}
	for a, n := range perAddress {
		if n > rc.MaxRegistrationsPerIPv4 {
			t.Fatalf("%s got %d registrations, above %d", a, n, rc.MaxRegistrationsPerIPv4)
		}
	}
	if texts["quota: 1000 live registrations per IPv4 /32 reached"] == 0 || texts["quota: 5000 live registrations per IPv4 /24 reached"] == 0 {
		t.Fatalf("refusals %v, want both the /32 and the /24 quota named", texts)
	}
	// Every honest peer is in the namespace, next to the attacker's 5000.
	found := map[peer.ID]bool{}
	var cookie []byte
	for range 1000 {
		d := p.ask(good[0], goodSource(0), discoverMsg("chat", 1000, cookie)).GetDiscoverResponse()
		if d.GetStatus() != pb.Message_OK {
			t.Fatalf("paging: %v %q", d.GetStatus(), d.GetStatusText())
		}
		if len(d.GetRegistrations()) == 0 {
			break
		}
		for _, id := range peersOf(t, d) {
			found[id] = true
		}
		cookie = d.GetCookie()
	}
	if len(found) != rc.MaxRegistrationsPerIPv4Net+honest {
		t.Fatalf("namespace holds %d peers, want %d", len(found), rc.MaxRegistrationsPerIPv4Net+honest)
	}
	for i, id := range good {
		if !found[id.id] {
			t.Fatalf("honest peer %d missing", i)
		}
	}
}

// TestAllowlist: a trusted prefix and a trusted peer are held by no quota
// and no rate, and their registrations count in no quota of their network.
func TestAllowlist(t *testing.T) {
	rc := server.DefaultResources()
	rc.MaxRegistrationsPerIPv4, rc.MaxRegistrationsPerIPv4Net = 1, 1
	rc.RegisterRate, rc.RegisterNetRate = ratePer(1, 1), ratePer(1, 1)
	ids := identities(t, 8)
	p := newPoint(t, server.WithResources(rc), server.WithAllowlist(server.Allowlist{
		Prefixes: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")},
		Peers:    []peer.ID{ids[0].id},
	}))
	for i := range 3 {
		if r := p.registerAs(ids[0], "192.0.2.1", fmt.Sprintf("ns%d", i)); r.GetStatus() != pb.Message_OK {
			t.Fatalf("trusted peer, registration %d: %v %q", i, r.GetStatus(), r.GetStatusText())
		}
		if r := p.registerAs(ids[1+i], "10.9.3.4", "ns"); r.GetStatus() != pb.Message_OK {
			t.Fatalf("trusted prefix, registration %d: %v %q", i, r.GetStatus(), r.GetStatusText())
		}
	}
	// The trusted peer's registrations left 192.0.2.0/24 its quota.
	if r := p.registerAs(ids[4], "192.0.2.2", "ns"); r.GetStatus() != pb.Message_OK {
		t.Fatalf("untrusted peer of the trusted peer's network: %v %q", r.GetStatus(), r.GetStatusText())
	}
	r := p.registerAs(ids[5], "192.0.2.3", "ns")
	if r.GetStatus() != pb.Message_E_UNAVAILABLE {
		t.Fatalf("untrusted peer beyond the network's rate: %v %q", r.GetStatus(), r.GetStatusText())
	}
}
