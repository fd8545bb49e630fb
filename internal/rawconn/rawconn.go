// Package rawconn opens libp2p connections below the host: Noise and yamux
// over TCP from a chosen local address, as a peer of a chosen key. The load
// and abuse scripts use it to play many peers from many sources, and to
// write every byte of a stream themselves, multistream negotiation
// included.
package rawconn

import (
	"context"
	"crypto/rand"
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// Dial opens a connection to point's first address from local, as the peer
// of key (a new peer if key is nil), within timeout. The streams the point
// opens on it (identify) are reset, as a client that serves nothing does.
func Dial(ctx context.Context, point *peer.AddrInfo, local net.IP, key crypto.PrivKey, timeout time.Duration) (transport.CapableConn, error) {
	if key == nil {
		var err error
		if key, _, err = crypto.GenerateEd25519Key(rand.Reader); err != nil {
			return nil, err
		}
	}
	muxers := []upgrader.StreamMuxer{{ID: yamux.ID, Muxer: yamux.DefaultTransport}}
	security, err := noise.New(noise.ID, key, muxers)
	if err != nil {
		return nil, err
	}
	rm := &network.NullResourceManager{}
	up, err := upgrader.New([]sec.SecureTransport{security}, muxers, nil, rm, nil)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: local}, Timeout: timeout}
	tpt, err := tcp.NewTCPTransport(up, rm, nil, tcp.WithDialerForAddr(func(ma.Multiaddr) (tcp.ContextDialer, error) {
		return dialer, nil
	}))
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := tpt.Dial(dctx, point.Addrs[0], point.ID)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			s, err := c.AcceptStream()
			if err != nil {
				return
			}
			_ = s.Reset()
		}
	}()
	return c, nil
}
