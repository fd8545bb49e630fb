// Package client is the dialing side of the Rendezvous protocol: it
// registers the host at rendezvous points, unregisters it, and discovers the
// peers registered there.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// Defaults of the client.
const (
	// DefaultMaxResponseSize bounds a response the client reads.
	DefaultMaxResponseSize = 1 << 20
	// DefaultMaxRegisterSize is the size a REGISTER is kept under by
	// dropping advertised addresses: nim-libp2p points silently drop
	// larger requests.
	DefaultMaxRegisterSize = 4096
	// DefaultRequestTimeout bounds one request to one point.
	DefaultRequestTimeout = 15 * time.Second
)

// Registration is a peer found by Discover.
type Registration struct {
	// Namespace is the namespace the peer is registered in.
	Namespace string
	// Peer is the registered peer with the addresses of its record.
	Peer peer.AddrInfo
	// Seq is the sequence number of the peer's record: the higher, the newer.
	Seq uint64
	// TTL is what remained of the registration when the point answered.
	TTL time.Duration
	// Record is the signed envelope of the peer record, as received.
	Record []byte
}

// Client registers its host at rendezvous points and discovers peers there.
type Client struct {
	host            host.Host
	protocol        protocol.ID
	ttl             rendezvous.TTLPolicy
	requestTimeout  time.Duration
	maxResponseSize int
	maxRegisterSize int
	addrs           func() []ma.Multiaddr
}

// Option configures a Client.
type Option func(*Client) error

// WithProtocol sets the protocol ID spoken to points.
func WithProtocol(id protocol.ID) Option {
	return func(c *Client) error { c.protocol = id; return nil }
}

// WithTTLPolicy sets the TTLs the client asks for: Register refuses a TTL
// outside [Min, Max] before any I/O, and uses Default for a TTL of 0.
func WithTTLPolicy(p rendezvous.TTLPolicy) Option {
	return func(c *Client) error {
		if err := p.Validate(); err != nil {
			return err
		}
		c.ttl = p
		return nil
	}
}

// WithRequestTimeout bounds each request to one point.
func WithRequestTimeout(d time.Duration) Option {
	return func(c *Client) error { c.requestTimeout = d; return nil }
}

// WithAddrs sets what the client advertises, in place of the host's
// addresses.
func WithAddrs(addrs func() []ma.Multiaddr) Option {
	return func(c *Client) error { c.addrs = addrs; return nil }
}

// WithMaxRegisterSize sets the size a REGISTER is kept under by dropping
// addresses from the record.
func WithMaxRegisterSize(n int) Option {
	return func(c *Client) error { c.maxRegisterSize = n; return nil }
}

// New returns a client for host h.
func New(h host.Host, opts ...Option) (*Client, error) {
	c := &Client{
		host:            h,
		protocol:        rendezvous.ProtocolID,
		ttl:             rendezvous.DefaultTTLPolicy(),
		requestTimeout:  DefaultRequestTimeout,
		maxResponseSize: DefaultMaxResponseSize,
		maxRegisterSize: DefaultMaxRegisterSize,
		addrs:           h.Addrs,
	}
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// RegisterAt registers the host in ns at one point, for ttl (0 for the
// client's default), and returns the TTL the point granted.
func (c *Client) RegisterAt(ctx context.Context, point peer.ID, ns string, ttl time.Duration) (time.Duration, error) {
	req, err := c.registerRequest(ns, ttl)
	if err != nil {
		return 0, err
	}
	resp, err := c.roundTrip(ctx, point, req)
	if err != nil {
		return 0, err
	}
	r := resp.GetRegisterResponse()
	if resp.GetType() != pb.Message_REGISTER_RESPONSE || r == nil {
		return 0, fmt.Errorf("rendezvous point %s answered a %s to a REGISTER", point, resp.GetType())
	}
	if r.GetStatus() != rendezvous.StatusOK {
		return 0, &rendezvous.Error{Status: r.GetStatus(), Text: r.GetStatusText()}
	}
	granted := time.Duration(r.GetTtl()) * time.Second
	if r.Ttl == nil || granted == 0 {
		// A point that does not say grants what was asked.
		granted = time.Duration(req.GetRegister().GetTtl()) * time.Second
	}
	return granted, nil
}

// registerRequest builds the REGISTER of the host in ns, checking what it can
// before any I/O.
func (c *Client) registerRequest(ns string, ttl time.Duration) (*pb.Message, error) {
	if err := rendezvous.ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = c.ttl.Default
	}
	if ttl%time.Second != 0 {
		return nil, rendezvous.Errorf(rendezvous.StatusInvalidTTL, "ttl %v is not a whole number of seconds", ttl)
	}
	if _, err := c.ttl.Resolve(uint64(ttl / time.Second)); err != nil {
		return nil, err
	}
	key := c.host.Peerstore().PrivKey(c.host.ID())
	if key == nil {
		return nil, errors.New("rendezvous client: host has no private key")
	}
	addrs := advertisable(c.addrs())
	seq := peer.TimestampSeq()
	for {
		if len(addrs) == 0 {
			return nil, errors.New("rendezvous client: no address to advertise")
		}
		rec, err := rendezvous.SealPeerRecord(key, addrs, seq)
		if err != nil {
			return nil, fmt.Errorf("rendezvous client: signing peer record: %w", err)
		}
		req := &pb.Message{
			Type: pb.Message_REGISTER.Enum(),
			Register: &pb.Message_Register{
				Ns:               proto.String(ns),
				SignedPeerRecord: rec,
				Ttl:              proto.Uint64(uint64(ttl / time.Second)),
			},
		}
		if size := proto.Size(req); size+3 <= c.maxRegisterSize || len(addrs) == 1 {
			return req, nil
		}
		addrs = addrs[:len(addrs)-1]
	}
}

// advertisable returns addrs without /p2p/ suffixes and duplicates.
func advertisable(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := make([]ma.Multiaddr, 0, len(addrs))
	seen := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		a, _ = peer.SplitAddr(a)
		if a == nil || seen[string(a.Bytes())] {
			continue
		}
		seen[string(a.Bytes())] = true
		out = append(out, a)
	}
	return out
}

// UnregisterAt removes the host's registration in ns at one point. The
// protocol has no answer: it returns once the point has read the request
// and closed the stream, or at the deadline.
func (c *Client) UnregisterAt(ctx context.Context, point peer.ID, ns string) error {
	if err := rendezvous.ValidateNamespace(ns); err != nil {
		return err
	}
	req := &pb.Message{
		Type:       pb.Message_UNREGISTER.Enum(),
		Unregister: &pb.Message_Unregister{Ns: proto.String(ns)},
	}
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	s, err := c.openStream(ctx, point)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := pbio.NewDelimitedWriter(s).WriteMsg(req); err != nil {
		_ = s.Reset()
		return fmt.Errorf("rendezvous point %s: sending UNREGISTER: %w", point, err)
	}
	_ = s.CloseWrite()
	// Wait for the point to close its side, so the request is not cut off.
	_, _ = io.Copy(io.Discard, io.LimitReader(s, int64(c.maxResponseSize)))
	return nil
}

// DiscoverAt asks one point for at most limit registrations in ns (every
// namespace if empty), continuing after cookie. It returns the
// registrations and the cookie to continue with.
func (c *Client) DiscoverAt(ctx context.Context, point peer.ID, ns string, limit int, cookie []byte) ([]Registration, []byte, error) {
	if err := rendezvous.ValidateDiscoverNamespace(ns); err != nil {
		return nil, nil, err
	}
	if limit < 0 {
		return nil, nil, fmt.Errorf("rendezvous client: negative limit %d", limit)
	}
	req := &pb.Message{
		Type: pb.Message_DISCOVER.Enum(),
		Discover: &pb.Message_Discover{
			Ns:     proto.String(ns),
			Limit:  proto.Uint64(uint64(limit)),
			Cookie: append([]byte{}, cookie...),
		},
	}
	resp, err := c.roundTrip(ctx, point, req)
	if err != nil {
		return nil, nil, err
	}
	r := resp.GetDiscoverResponse()
	if resp.GetType() != pb.Message_DISCOVER_RESPONSE || r == nil {
		return nil, nil, fmt.Errorf("rendezvous point %s answered a %s to a DISCOVER", point, resp.GetType())
	}
	if r.GetStatus() != rendezvous.StatusOK {
		return nil, nil, &rendezvous.Error{Status: r.GetStatus(), Text: r.GetStatusText()}
	}
	regs := make([]Registration, 0, len(r.GetRegistrations()))
	for _, reg := range r.GetRegistrations() {
		rec, _, err := rendezvous.OpenSignedPeerRecord(reg.GetSignedPeerRecord())
		if err != nil {
			continue // a point must not make us trust a forged record
		}
		regNS := reg.GetNs()
		if regNS == "" {
			regNS = ns
		}
		if ns != "" && regNS != ns {
			continue
		}
		regs = append(regs, Registration{
			Namespace: regNS,
			Peer:      peer.AddrInfo{ID: rec.PeerID, Addrs: rec.Addrs},
			Seq:       rec.Seq,
			TTL:       time.Duration(reg.GetTtl()) * time.Second,
			Record:    reg.GetSignedPeerRecord(),
		})
	}
	return regs, r.GetCookie(), nil
}

func (c *Client) openStream(ctx context.Context, point peer.ID) (network.Stream, error) {
	s, err := c.host.NewStream(ctx, point, c.protocol)
	if err != nil {
		return nil, fmt.Errorf("rendezvous point %s: %w", point, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	return s, nil
}

// roundTrip sends req to point on a stream of its own and reads the answer.
func (c *Client) roundTrip(ctx context.Context, point peer.ID, req *pb.Message) (*pb.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	s, err := c.openStream(ctx, point)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := pbio.NewDelimitedWriter(s).WriteMsg(req); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("rendezvous point %s: sending %s: %w", point, req.GetType(), err)
	}
	_ = s.CloseWrite()
	var resp pb.Message
	if err := pbio.NewDelimitedReader(s, c.maxResponseSize).ReadMsg(&resp); err != nil {
		_ = s.Reset()
		if errors.Is(err, io.EOF) || errors.Is(err, network.ErrReset) {
			return nil, fmt.Errorf("rendezvous point %s closed the stream without answering %s", point, req.GetType())
		}
		return nil, fmt.Errorf("rendezvous point %s: reading the answer to %s: %w", point, req.GetType(), err)
	}
	return &resp, nil
}
