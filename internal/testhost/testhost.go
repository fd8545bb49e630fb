// Package testhost makes the go-libp2p hosts that tests run on: TCP on
// loopback only (127.0.0.1 unless told another 127.x.y.z), closed when the
// test ends.
package testhost

import (
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
)

// New returns a host listening on a free TCP port of 127.0.0.1, closed at
// the end of t.
func New(t testing.TB, opts ...libp2p.Option) host.Host {
	t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// NewAt returns a host listening on a free TCP port of ip, an address of
// 127.0.0.0/8, and on nothing else, closed at the end of t. With go-libp2p's
// port reuse its connections dial out from that listener, so the hosts a
// point sees come from distinct addresses.
func NewAt(t testing.TB, ip string, opts ...libp2p.Option) host.Host {
	t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/" + ip + "/tcp/0")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}
