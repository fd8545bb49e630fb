package client

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/rendezvous-p2p/rendezvous"
)

// Option configures a Client.
type Option func(*Client) error

// WithPoints adds rendezvous points. Their addresses go into the host's
// peerstore, so the client dials them when it needs to.
func WithPoints(points ...peer.AddrInfo) Option {
	return func(c *Client) error {
		for _, p := range points {
			if err := p.ID.Validate(); err != nil {
				return fmt.Errorf("rendezvous client: point %q: %w", p.ID, err)
			}
		}
		c.staticPoints = append(c.staticPoints, points...)
		return nil
	}
}

// WithPointAddrs adds rendezvous points by multiaddrs ending in /p2p/<id>.
// Several addresses of one point are merged.
func WithPointAddrs(addrs ...ma.Multiaddr) Option {
	return func(c *Client) error {
		infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
		if err != nil {
			return fmt.Errorf("rendezvous client: point address: %w", err)
		}
		c.staticPoints = append(c.staticPoints, infos...)
		return nil
	}
}

// WithAutoPoints makes every connected peer whose identify protocols
// include the client's protocol ID a rendezvous point, as nim-libp2p does.
// A point found this way is registered at as soon as identify completes,
// and dropped when it disconnects.
func WithAutoPoints() Option {
	return func(c *Client) error { c.autoPoints = true; return nil }
}

// WithProtocol sets the protocol ID spoken to points, rendezvous.ProtocolID
// by default.
func WithProtocol(id protocol.ID) Option {
	return func(c *Client) error { c.protocol = id; return nil }
}

// WithTTLPolicy sets the TTLs the client asks for: Register refuses a TTL
// outside [Min, Max] before any I/O, and uses Default for a TTL of 0. The
// default is rendezvous.DefaultTTLPolicy().
func WithTTLPolicy(p rendezvous.TTLPolicy) Option {
	return func(c *Client) error {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("rendezvous client: %w", err)
		}
		c.ttl = p
		return nil
	}
}

// WithRequestTimeout bounds each request to one point, dialing included.
// Default DefaultRequestTimeout.
func WithRequestTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return errors.New("rendezvous client: request timeout must be positive")
		}
		c.requestTimeout = d
		return nil
	}
}

// WithAddrs sets what the client advertises, in place of the host's
// addresses. The function is called at each REGISTER; after a change, emit
// event.EvtLocalAddressesUpdated on the host's bus to re-register at once.
func WithAddrs(addrs func() []ma.Multiaddr) Option {
	return func(c *Client) error { c.addrs = addrs; return nil }
}

// WithAddrFilter filters and orders the advertised addresses (already
// without /p2p/ suffixes) before they are signed. When a REGISTER is too
// large, addresses are dropped from the end of the list.
func WithAddrFilter(f func([]ma.Multiaddr) []ma.Multiaddr) Option {
	return func(c *Client) error { c.addrFilter = f; return nil }
}

// WithMaxRegisterSize sets the size a REGISTER is kept under, framing
// included, by dropping addresses from the record. Default
// DefaultMaxRegisterSize.
func WithMaxRegisterSize(n int) Option {
	return func(c *Client) error {
		if n <= 0 {
			return errors.New("rendezvous client: register size must be positive")
		}
		c.maxRegisterSize = n
		return nil
	}
}

// WithConcurrency bounds the points a call talks to at once. Default
// DefaultConcurrency.
func WithConcurrency(n int) Option {
	return func(c *Client) error {
		if n <= 0 {
			return errors.New("rendezvous client: concurrency must be positive")
		}
		c.concurrency = n
		return nil
	}
}

// WithMaxPages bounds the DISCOVER requests to one point in one call of
// Discover or FindPeers. Default DefaultMaxPages.
func WithMaxPages(n int) Option {
	return func(c *Client) error {
		if n <= 0 {
			return errors.New("rendezvous client: max pages must be positive")
		}
		c.maxPages = n
		return nil
	}
}

// WithBackoff sets the bounds of the jittered exponential backoff between
// failed refreshes at one point. Default DefaultMinBackoff and
// DefaultMaxBackoff.
func WithBackoff(minWait, maxWait time.Duration) Option {
	return func(c *Client) error { c.minBackoff, c.maxBackoff = minWait, maxWait; return nil }
}

// WithMaxCachedPeers bounds the registrations cached per namespace for
// Discover and FindPeers. Default DefaultMaxCachedPeers.
func WithMaxCachedPeers(n int) Option {
	return func(c *Client) error {
		if n <= 0 {
			return errors.New("rendezvous client: cache size must be positive")
		}
		c.maxCachedPeers = n
		return nil
	}
}

// WithLogger sets the logger; slog.Default() otherwise.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) error { c.log = l; return nil }
}

// WithMaxResponseSize bounds an answer the client reads. A DISCOVER whose
// answer is larger is asked again for half as many registrations.
// Default DefaultMaxResponseSize.
func WithMaxResponseSize(n int) Option {
	return func(c *Client) error {
		if n <= 0 {
			return errors.New("rendezvous client: response size must be positive")
		}
		c.maxResponseSize = n
		return nil
	}
}
