// Package client is the dialing side of the Rendezvous protocol: it
// registers the host at rendezvous points and keeps the registrations
// alive, unregisters it, and discovers the peers registered there.
//
// Three lines advertise a host and find others:
//
//	c, err := client.New(h, client.WithPoints(point))
//	results, err := c.Register(ctx, "my-app", 0)
//	regs, results, err := c.Discover(ctx, "my-app", 0)
//
// A Client also implements go-libp2p's discovery.Discovery, so it plugs
// into go-libp2p-pubsub (pubsub.WithDiscovery) and p2p/discovery/backoff.
package client

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/rendezvous-p2p/rendezvous"
)

// Defaults of the client.
const (
	// DefaultMaxResponseSize bounds a response the client reads.
	DefaultMaxResponseSize = 1 << 20
	// DefaultMaxRegisterSize is the size a REGISTER is kept under by
	// dropping advertised addresses: nim-libp2p points silently drop
	// larger requests.
	DefaultMaxRegisterSize = 4096
	// DefaultMaxAdvertisedAddrBytes bounds the binary addresses of the
	// record the client signs, dropping addresses from the end of the
	// list: the Waku point refuses a record with more than 2048 bytes of
	// addresses.
	DefaultMaxAdvertisedAddrBytes = 2048
	// DefaultRequestTimeout bounds one request to one point.
	DefaultRequestTimeout = 15 * time.Second
	// DefaultDiscoverLimit is the limit a DISCOVER asks for when the
	// caller gives none: the most the specification recommends per
	// response. The field is always written, never 0.
	DefaultDiscoverLimit = 1000
	// DefaultConcurrency bounds the points a call talks to at once.
	DefaultConcurrency = 8
	// DefaultMaxPages bounds the DISCOVER requests to one point in one
	// call of Discover or FindPeers.
	DefaultMaxPages = 10
	// DefaultMinBackoff is the first wait before retrying a failed refresh.
	DefaultMinBackoff = time.Second
	// DefaultMaxBackoff is the longest wait before retrying a failed refresh.
	DefaultMaxBackoff = 5 * time.Minute
	// DefaultMaxCachedPeers bounds the registrations cached per namespace.
	DefaultMaxCachedPeers = 10_000
)

// Errors of the calls that fan out to every point.
var (
	// ErrNoPoints means the client knows no rendezvous point.
	ErrNoPoints = errors.New("rendezvous client: no rendezvous point")
	// ErrNoPointReached means every point failed; the per-point results
	// say why.
	ErrNoPointReached = errors.New("rendezvous client: no rendezvous point answered")
	// ErrClosed means the client is closed.
	ErrClosed = errors.New("rendezvous client: closed")
)

// Registration is a peer found by Discover.
type Registration struct {
	// Namespace is the namespace the peer is registered in.
	Namespace string
	// Peer is the registered peer with the addresses of its record.
	Peer peer.AddrInfo
	// Seq is the sequence number of the peer's record: the higher, the newer.
	Seq uint64
	// TTL is what remained of the registration when the point answered
	// (DiscoverAt) or when Discover returned.
	TTL time.Duration
	// Record is the signed envelope of the peer record, as received.
	Record []byte
	// Point is the rendezvous point the registration was found at.
	Point peer.ID
}

// Client registers its host at rendezvous points and discovers peers there.
// Its methods are safe for concurrent use.
type Client struct {
	host            host.Host
	protocol        protocol.ID
	ttl             rendezvous.TTLPolicy
	requestTimeout  time.Duration
	maxResponseSize int
	maxRegisterSize int
	addrs           func() []ma.Multiaddr
	addrFilter      func([]ma.Multiaddr) []ma.Multiaddr
	concurrency     int
	maxPages        int
	minBackoff      time.Duration
	maxBackoff      time.Duration
	maxCachedPeers  int
	autoPoints      bool
	log             *slog.Logger
	staticPoints    []peer.AddrInfo

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the goroutines that Close waits for

	recMu sync.Mutex
	rec   *sealedRecord

	mu      sync.Mutex
	closed  bool
	points  []peer.ID            // the static points, in order
	auto    map[peer.ID]struct{} // the points found by protocol
	keepers map[string]*keeper   // the registrations kept alive, by namespace
	cache   map[string]*nsCache  // discovered registrations, by namespace asked
	cookies map[cookieKey][]byte // the cookie to continue with, per point and namespace
	// legacyPoints are the points that granted a REGISTER only with the
	// record in the legacy envelope (rust-libp2p's).
	legacyPoints map[peer.ID]bool
	order        uint64 // counts cache insertions, for a stable order
}

// New returns a client for host h. Without WithPoints, WithPointAddrs or
// WithAutoPoints it knows no point: only the per-point methods (RegisterAt,
// UnregisterAt, DiscoverAt) are then of use. Close stops it.
func New(h host.Host, opts ...Option) (*Client, error) {
	c := &Client{
		host:            h,
		protocol:        rendezvous.ProtocolID,
		ttl:             rendezvous.DefaultTTLPolicy(),
		requestTimeout:  DefaultRequestTimeout,
		maxResponseSize: DefaultMaxResponseSize,
		maxRegisterSize: DefaultMaxRegisterSize,
		addrs:           h.Addrs,
		concurrency:     DefaultConcurrency,
		maxPages:        DefaultMaxPages,
		minBackoff:      DefaultMinBackoff,
		maxBackoff:      DefaultMaxBackoff,
		maxCachedPeers:  DefaultMaxCachedPeers,
		log:             slog.Default(),
		auto:            make(map[peer.ID]struct{}),
		keepers:         make(map[string]*keeper),
		cache:           make(map[string]*nsCache),
		cookies:         make(map[cookieKey][]byte),
		legacyPoints:    make(map[peer.ID]bool),
	}
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	if c.minBackoff <= 0 || c.maxBackoff < c.minBackoff {
		return nil, errors.New("rendezvous client: backoff bounds must be positive and ordered")
	}
	seen := make(map[peer.ID]bool)
	for _, p := range c.staticPoints {
		if p.ID == h.ID() {
			continue
		}
		h.Peerstore().AddAddrs(p.ID, p.Addrs, peerstore.PermanentAddrTTL)
		if !seen[p.ID] {
			seen[p.ID] = true
			c.points = append(c.points, p.ID)
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if len(c.points) > 0 || c.autoPoints {
		// Without points nothing is kept alive, and the host's events do
		// not matter: a client for the per-point methods runs no goroutine.
		if err := c.watch(); err != nil {
			c.cancel()
			return nil, err
		}
	}
	return c, nil
}

// Points returns the rendezvous points the client uses now: the ones it
// was given, then the connected peers found to serve the protocol.
func (c *Client) Points() []peer.ID {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]peer.ID(nil), c.points...)
	for p := range c.auto {
		if !containsPeer(c.points, p) {
			out = append(out, p)
		}
	}
	return out
}

func containsPeer(ps []peer.ID, p peer.ID) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// Close stops refreshing, unregisters every namespace kept alive at every
// point (each request bounded by the request timeout) and returns when no
// goroutine of the client is left. It does not close the host.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	keepers := c.keepers
	c.keepers = nil
	c.mu.Unlock()

	c.cancel()
	for _, k := range keepers {
		<-k.done
	}
	c.wg.Wait()

	var wg sync.WaitGroup
	for ns := range keepers {
		wg.Go(func() { c.unregisterAll(ns) })
	}
	wg.Wait()
	return nil
}
