package server_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
)

// newPeerAt is a peer on a host of its own listening on ip, connected to
// the point from there.
func newPeerAt(t *testing.T, p *point, ip string) *peerConn {
	t.Helper()
	h := testhost.NewAt(t, ip)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: p.host.ID(), Addrs: p.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return &peerConn{t: t, host: h, point: p.host.ID(), proto: rendezvous.ProtocolID}
}

// TestSourcesOverLibp2p: peers on hosts bound to distinct loopback
// addresses are told apart by the point, over the wire: each address and
// each /24 holds its own quota.
func TestSourcesOverLibp2p(t *testing.T) {
	rc := server.DefaultResources()
	rc.MaxRegistrationsPerIPv4, rc.MaxRegistrationsPerIPv4Net = 2, 3
	p := newPoint(t, server.WithResources(rc))
	for _, tc := range []struct {
		ip     string
		status pb.Message_ResponseStatus
		text   string
	}{
		{"127.1.0.1", pb.Message_OK, ""},
		{"127.1.0.1", pb.Message_OK, ""},
		{"127.1.0.1", pb.Message_E_NOT_AUTHORIZED, "quota: 2 live registrations per IPv4 /32 reached"},
		{"127.1.0.2", pb.Message_OK, ""},
		{"127.1.0.3", pb.Message_E_NOT_AUTHORIZED, "quota: 3 live registrations per IPv4 /24 reached"},
		{"127.2.0.1", pb.Message_OK, ""},
		{"127.3.0.1", pb.Message_OK, ""},
	} {
		c := newPeerAt(t, p, tc.ip)
		// What the point sees of the connection.
		conns := p.host.Network().ConnsToPeer(c.host.ID())
		if len(conns) != 1 {
			t.Fatalf("%d connections from %s", len(conns), tc.ip)
		}
		ip, err := manet.ToIP(conns[0].RemoteMultiaddr())
		if err != nil || ip.String() != tc.ip || server.SourceOf(conns[0]) != netip.MustParseAddr(tc.ip) {
			t.Fatalf("the point sees %s (%v), source %v, want %s", conns[0].RemoteMultiaddr(), err, server.SourceOf(conns[0]), tc.ip)
		}
		r := c.register("ns", 7200)
		if r.GetStatus() != tc.status || r.GetStatusText() != tc.text {
			t.Fatalf("from %s: %v %q, want %v %q", tc.ip, r.GetStatus(), r.GetStatusText(), tc.status, tc.text)
		}
	}
}
