package server

import (
	"net/netip"
	"slices"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/x/rate"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/store"
)

// Request is one request to the point, with the connection it came on.
type Request struct {
	// Message is the request as decoded.
	Message *pb.Message
	// Peer is the remote peer of the connection, authenticated by its
	// security handshake: the only peer a REGISTER may register.
	Peer peer.ID
	// Source is the IP address of the connection (SourceOf), which the
	// per-source quotas and rates count by. The zero Addr, a connection
	// without an address of its own, counts as UnknownSource.
	Source netip.Addr
	// Scope, if not nil, is charged for the response buffer of a DISCOVER.
	Scope network.ResourceScope
}

// UnknownSource is the source of the connections that have no IP address:
// they share its quotas and rates, as if they came from one address.
var UnknownSource = netip.IPv4Unspecified()

// SourceOf returns the IP address that requests on c count by: the first
// IP address of its remote multiaddr, IPv4-mapped IPv6 addresses as IPv4.
//
// A connection through a circuit relay (/p2p-circuit) has the relay's
// transport address first, so its source is the relay: the peers a relay
// carries share its quotas and rates, as the peers behind a NAT gateway
// share the gateway's. That is the address the point can hold to account:
// an attacker running its own relay is charged at its own address, and the
// peers of a relay the operator trusts are let through by allowlisting the
// relay's prefix (Allowlist). A connection with no IP address at all gets
// UnknownSource.
func SourceOf(c network.Conn) netip.Addr {
	ip, err := manet.ToIP(c.RemoteMultiaddr())
	if err != nil {
		return UnknownSource
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return UnknownSource
	}
	return a.Unmap()
}

// Allowlist names the trusted sources that per-source quotas and rates do
// not hold: a bootstrap node, a relay of the operator's, a monitoring
// network. The per-peer limit, the point's caps and the ACL still apply.
type Allowlist struct {
	// Prefixes are trusted networks; a request whose source lies in one
	// is trusted.
	Prefixes []netip.Prefix
	// Peers are trusted peers, wherever they connect from.
	Peers []peer.ID
}

// trusts reports whether a request of p from src is trusted.
func (a *Allowlist) trusts(p peer.ID, src netip.Addr) bool {
	if slices.Contains(a.Peers, p) {
		return true
	}
	for _, pf := range a.Prefixes {
		if pf.Contains(src) {
			return true
		}
	}
	return false
}

// newLimiter returns the rate limiter of one request kind: per address
// (IPv4 /32, IPv6 /64) and per network (IPv4 /24, IPv6 /48), the trusted
// prefixes unlimited (a NetworkPrefixLimit of rate 0).
func newLimiter(addr, network rate.Limit, trusted []netip.Prefix) *rate.Limiter {
	l := &rate.Limiter{
		SubnetRateLimiter: rate.SubnetLimiter{
			IPv4SubnetLimits: []rate.SubnetLimit{
				{PrefixLength: store.IPv4AddressBits, Limit: addr},
				{PrefixLength: store.IPv4NetBits, Limit: network},
			},
			IPv6SubnetLimits: []rate.SubnetLimit{
				{PrefixLength: store.IPv6SubnetBits, Limit: addr},
				{PrefixLength: store.IPv6NetBits, Limit: network},
			},
		},
	}
	for _, p := range trusted {
		l.NetworkPrefixLimits = append(l.NetworkPrefixLimits, rate.PrefixLimit{Prefix: p.Masked()})
	}
	return l
}
