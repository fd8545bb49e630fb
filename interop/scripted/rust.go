package scripted

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// Limits of rust-libp2p's libp2p-rendezvous (0.18).
const (
	// RustMaxMessageSize is the largest frame its codec reads: 1 MiB.
	RustMaxMessageSize = 1 << 20
	// RustDefaultMinTTL is its server's MIN_TTL.
	RustDefaultMinTTL = 2 * time.Hour
	// RustDefaultMaxTTL is its server's MAX_TTL.
	RustDefaultMaxTTL = 72 * time.Hour
	// RustDefaultTTL is what a REGISTER without `ttl` gets.
	RustDefaultTTL = 2 * time.Hour
	// RustRequestTimeout is request-response's default timeout, which
	// bounds each exchange.
	RustRequestTimeout = 10 * time.Second

	rustMaxNamespace = 255 // bytes
	rustCookieIDLen  = 8
)

// ErrRustMalformed is a message that rust-libp2p's codec fails to decode
// into its data model: a point drops such a request unanswered, a client
// fails the request.
var ErrRustMalformed = errors.New("rust codec: malformed message")

// RustEvent is one request a RustPoint read and what it did with it.
type RustEvent struct {
	Peer peer.ID
	At   time.Time
	// Request is the message read; nil if the frame was not protobuf.
	Request *pb.Message
	// Envelope is the envelope of a REGISTER's record; it means nothing
	// when the record did not open (Dropped says so).
	Envelope Envelope
	// Response is what was answered; nil for UNREGISTER and dropped
	// requests.
	Response *pb.Message
	// Dropped says why the request was dropped unanswered; nil otherwise.
	Dropped error
}

// RustPoint is a rendezvous point that behaves like rust-libp2p's
// (libp2p-rendezvous 0.18, on request-response): one request per stream,
// closed after the answer; a request its codec cannot decode into its data
// model (no `type`, a REGISTER without `ns` or record, a record not in the
// legacy libp2p-routing-state envelope, a cookie shorter than 8 bytes, a
// namespace over 255 bytes) is dropped: the stream is closed unanswered.
// TTLs outside [min, max] get E_INVALID_TTL, a record of another peer
// E_NOT_AUTHORIZED, a cookie of another namespace E_INVALID_COOKIE. `ns`
// absent lists every namespace, `ns` "" is the namespace "". A present
// `limit` is obeyed, 0 included; absent means no limit. Registrations carry
// the TTL granted, not what remains of it.
type RustPoint struct {
	host   host.Host
	minTTL time.Duration
	maxTTL time.Duration
	book   Book
	events chan RustEvent

	mu      sync.Mutex
	cookies map[rustCookieKey]map[uint64]bool // registrations a cookie has seen, by Seq
	expiry  map[uint64]time.Time              // every registration's expiry, until it passes
}

// rustCookieKey identifies a cookie as rust compares them: its id and its
// namespace, if any.
type rustCookieKey struct {
	id    uint64
	hasNS bool
	ns    string
}

// RustPointOption configures a RustPoint.
type RustPointOption func(*RustPoint)

// WithRustMinTTL sets the shortest TTL the point grants (RustDefaultMinTTL
// by default), as rust's server Config::with_min_ttl does.
func WithRustMinTTL(d time.Duration) RustPointOption {
	return func(p *RustPoint) { p.minTTL = d }
}

// WithRustMaxTTL sets the longest TTL the point grants (RustDefaultMaxTTL
// by default).
func WithRustMaxTTL(d time.Duration) RustPointOption {
	return func(p *RustPoint) { p.maxTTL = d }
}

// NewRustPoint mounts a rust-like point on h under rendezvous.ProtocolID.
func NewRustPoint(h host.Host, opts ...RustPointOption) *RustPoint {
	p := &RustPoint{
		host:    h,
		minTTL:  RustDefaultMinTTL,
		maxTTL:  RustDefaultMaxTTL,
		events:  make(chan RustEvent, 1024),
		cookies: make(map[rustCookieKey]map[uint64]bool),
		expiry:  make(map[uint64]time.Time),
	}
	for _, opt := range opts {
		opt(p)
	}
	h.SetStreamHandler(rendezvous.ProtocolID, p.handle)
	return p
}

// Close unmounts the point.
func (p *RustPoint) Close() { p.host.RemoveStreamHandler(rendezvous.ProtocolID) }

// Book returns the registrations the point holds.
func (p *RustPoint) Book() *Book { return &p.book }

// Events delivers every request the point read, as it handles it. Events
// beyond its buffer (1024) are not kept.
func (p *RustPoint) Events() <-chan RustEvent { return p.events }

func (p *RustPoint) handle(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(RustRequestTimeout))
	ev := RustEvent{Peer: s.Conn().RemotePeer()}
	defer func() {
		select {
		case p.events <- ev:
		default:
		}
	}()
	frame, err := ReadFrame(bufio.NewReader(s), RustMaxMessageSize)
	ev.At = time.Now()
	if err != nil {
		ev.Dropped = err
		return
	}
	if ev.Request, err = Decode(frame); err != nil {
		ev.Dropped = fmt.Errorf("%w: %w", ErrRustMalformed, err)
		return
	}
	ev.Response, ev.Envelope, ev.Dropped = p.answer(ev.Peer, ev.Request, ev.At)
	if ev.Response != nil {
		if err := WriteFrame(s, ev.Response); err != nil {
			_ = s.Reset()
		}
	}
}

// answer handles one request as rust's codec and server do: a nil response
// with a nil error is an UNREGISTER.
func (p *RustPoint) answer(remote peer.ID, m *pb.Message, now time.Time) (*pb.Message, Envelope, error) {
	if m.Type == nil {
		return nil, 0, fmt.Errorf("%w: no type", ErrRustMalformed)
	}
	p.forgetExpired(now)
	switch m.GetType() {
	case pb.Message_REGISTER:
		return p.register(remote, m.GetRegister(), now)
	case pb.Message_UNREGISTER:
		u := m.GetUnregister()
		if u == nil || u.Ns == nil || len(u.GetNs()) > rustMaxNamespace {
			return nil, 0, fmt.Errorf("%w: UNREGISTER without a valid ns", ErrRustMalformed)
		}
		p.book.Remove(func(e Entry) bool { return e.Peer == remote && e.NS == u.GetNs() })
		return nil, 0, nil
	case pb.Message_DISCOVER:
		resp, err := p.discover(m.GetDiscover(), now)
		return resp, 0, err
	default:
		// rust's server panics on a response sent as a request; the stream
		// goes unanswered either way.
		return nil, 0, fmt.Errorf("%w: %s is not a request", ErrRustMalformed, m.GetType())
	}
}

func (p *RustPoint) register(remote peer.ID, r *pb.Message_Register, now time.Time) (*pb.Message, Envelope, error) {
	if r == nil || r.SignedPeerRecord == nil {
		return nil, 0, fmt.Errorf("%w: REGISTER without a signed peer record", ErrRustMalformed)
	}
	if r.Ns == nil || len(r.GetNs()) > rustMaxNamespace {
		return nil, 0, fmt.Errorf("%w: REGISTER without a valid ns", ErrRustMalformed)
	}
	rec, kind, err := OpenRecord(r.GetSignedPeerRecord())
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrRustMalformed, err)
	}
	if kind != Legacy {
		return nil, kind, fmt.Errorf("%w: record is not in the libp2p-routing-state envelope", ErrRustMalformed)
	}
	if rec.PeerID != remote {
		return rustRegisterResponse(rendezvous.StatusNotAuthorized, 0), kind, nil
	}
	secs := uint64(RustDefaultTTL / time.Second)
	if r.Ttl != nil {
		secs = r.GetTtl()
	}
	if secs < uint64(p.minTTL/time.Second) || secs > uint64(p.maxTTL/time.Second) {
		return rustRegisterResponse(rendezvous.StatusInvalidTTL, 0), kind, nil
	}
	ttl := time.Duration(secs) * time.Second
	seq := p.book.Put(r.GetNs(), remote, r.GetSignedPeerRecord(), ttl, now)
	p.mu.Lock()
	p.expiry[seq] = now.Add(ttl)
	p.mu.Unlock()
	return rustRegisterResponse(rendezvous.StatusOK, ttl), kind, nil
}

func rustRegisterResponse(status rendezvous.Status, ttl time.Duration) *pb.Message {
	r := &pb.Message_RegisterResponse{Status: status.Enum()}
	if status == rendezvous.StatusOK {
		r.Ttl = proto.Uint64(uint64(ttl / time.Second))
	}
	return &pb.Message{Type: pb.Message_REGISTER_RESPONSE.Enum(), RegisterResponse: r}
}

func (p *RustPoint) discover(d *pb.Message_Discover, now time.Time) (*pb.Message, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: DISCOVER without its message", ErrRustMalformed)
	}
	if d.Ns != nil && len(d.GetNs()) > rustMaxNamespace {
		return nil, fmt.Errorf("%w: namespace too long", ErrRustMalformed)
	}
	var cookie *rustCookieKey
	if d.Cookie != nil {
		key, err := parseRustCookie(d.Cookie)
		if err != nil {
			return nil, err
		}
		cookie = &key
	}
	if cookie != nil && cookie.hasNS && (d.Ns == nil || d.GetNs() != cookie.ns) {
		return &pb.Message{
			Type:             pb.Message_DISCOVER_RESPONSE.Enum(),
			DiscoverResponse: &pb.Message_DiscoverResponse{Status: rendezvous.StatusInvalidCookie.Enum()},
		}, nil
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[uint64]bool)
	if cookie != nil {
		for seq := range p.cookies[*cookie] {
			seen[seq] = true
		}
	}
	limit := uint64(1<<63 - 1)
	if d.Limit != nil {
		limit = d.GetLimit()
	}
	resp := &pb.Message_DiscoverResponse{Status: rendezvous.StatusOK.Enum()}
	for _, e := range p.book.Live(now, func(e Entry) bool { return !seen[e.Seq] && (d.Ns == nil || e.NS == d.GetNs()) }) {
		if uint64(len(resp.Registrations)) == limit {
			break
		}
		seen[e.Seq] = true
		resp.Registrations = append(resp.Registrations, &pb.Message_Register{
			Ns:               proto.String(e.NS),
			SignedPeerRecord: e.Record,
			Ttl:              proto.Uint64(uint64(e.TTL / time.Second)),
		})
	}
	next := rustCookieKey{id: rand.Uint64(), hasNS: d.Ns != nil, ns: d.GetNs()}
	p.cookies[next] = seen
	resp.Cookie = binary.BigEndian.AppendUint64(nil, next.id)
	if next.hasNS {
		resp.Cookie = append(resp.Cookie, next.ns...)
	}
	return &pb.Message{Type: pb.Message_DISCOVER_RESPONSE.Enum(), DiscoverResponse: resp}, nil
}

// forgetExpired does what rust's server does as each registration expires
// (a replaced one too): it drops it from every cookie and forgets the
// cookies left with nothing, so that they then read as unknown ones.
func (p *RustPoint) forgetExpired(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for seq, at := range p.expiry {
		if now.Before(at) {
			continue
		}
		delete(p.expiry, seq)
		for key, seen := range p.cookies {
			delete(seen, seq)
			if len(seen) == 0 {
				delete(p.cookies, key)
			}
		}
	}
}

// parseRustCookie reads a cookie as rust's codec does: an 8-byte id, then
// nothing or a UTF-8 namespace of at most 255 bytes.
func parseRustCookie(b []byte) (rustCookieKey, error) {
	if len(b) < rustCookieIDLen {
		return rustCookieKey{}, fmt.Errorf("%w: cookie of %d bytes", ErrRustMalformed, len(b))
	}
	ns := b[rustCookieIDLen:]
	if !utf8.Valid(ns) || len(ns) > rustMaxNamespace {
		return rustCookieKey{}, fmt.Errorf("%w: cookie namespace", ErrRustMalformed)
	}
	return rustCookieKey{id: binary.BigEndian.Uint64(b), hasNS: len(ns) > 0, ns: string(ns)}, nil
}

// RustClient is a rendezvous client that behaves like rust-libp2p's: one
// request per stream, written and then closed for writing before the
// response is read (request-response does so); its record in the legacy
// envelope; and strict decoding of answers: `type` and `status` required,
// an OK REGISTER_RESPONSE must carry `ttl`, an OK DISCOVER_RESPONSE a
// `cookie` of 8 bytes and an optional UTF-8 namespace, each registration
// `ns`, a legacy-envelope record and `ttl`. A response that fails any of
// these fails the request with ErrRustMalformed.
type RustClient struct {
	host  host.Host
	point peer.ID
}

// NewRustClient returns a rust-like client of point, advertising h's
// listen addresses (rust registers its external addresses).
func NewRustClient(h host.Host, point peer.AddrInfo) *RustClient {
	h.Peerstore().AddAddrs(point.ID, point.Addrs, peerstore.PermanentAddrTTL)
	return &RustClient{host: h, point: point.ID}
}

// RustDiscover is a DISCOVER as rust's client builds it: each field is
// written only when set.
type RustDiscover struct {
	// NS is the namespace asked for; nil asks for every namespace.
	NS *string
	// Limit bounds the registrations returned; nil for none.
	Limit *uint64
	// Cookie continues an earlier DISCOVER; nil for none.
	Cookie []byte
}

// RustRegistration is a registration as rust's client decodes it.
type RustRegistration struct {
	NS   string
	Peer peer.AddrInfo
	TTL  time.Duration
}

// Register registers the client's host in ns for ttl (0 writes no `ttl`)
// and returns the TTL granted. A refusal is a *rendezvous.Error.
func (c *RustClient) Register(ctx context.Context, ns string, ttl time.Duration) (time.Duration, error) {
	record, err := SealRecord(c.host, Legacy)
	if err != nil {
		return 0, err
	}
	r := &pb.Message_Register{Ns: proto.String(ns), SignedPeerRecord: record}
	if ttl > 0 {
		r.Ttl = proto.Uint64(uint64(ttl / time.Second))
	}
	resp, err := c.exchange(ctx, &pb.Message{Type: pb.Message_REGISTER.Enum(), Register: r})
	if err != nil {
		return 0, err
	}
	rr := resp.GetRegisterResponse()
	if resp.Type == nil || resp.GetType() != pb.Message_REGISTER_RESPONSE || rr == nil || rr.Status == nil {
		return 0, fmt.Errorf("%w: not a REGISTER_RESPONSE with a status", ErrRustMalformed)
	}
	if rr.GetStatus() != rendezvous.StatusOK {
		return 0, &rendezvous.Error{Status: rr.GetStatus()}
	}
	if rr.Ttl == nil {
		return 0, fmt.Errorf("%w: OK REGISTER_RESPONSE without ttl", ErrRustMalformed)
	}
	return time.Duration(rr.GetTtl()) * time.Second, nil
}

// Unregister removes the registration in ns. It returns once the point has
// closed the stream; an answer is an error, the protocol has none.
func (c *RustClient) Unregister(ctx context.Context, ns string) error {
	m := &pb.Message{Type: pb.Message_UNREGISTER.Enum(), Unregister: &pb.Message_Unregister{Ns: proto.String(ns)}}
	resp, err := c.exchange(ctx, m)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, network.ErrReset):
		return nil
	case err != nil:
		return err
	default:
		return fmt.Errorf("point answered an UNREGISTER with a %s", resp.GetType())
	}
}

// Discover sends one DISCOVER and returns the registrations and the cookie
// to continue with. A refusal is a *rendezvous.Error.
func (c *RustClient) Discover(ctx context.Context, q RustDiscover) ([]RustRegistration, []byte, error) {
	d := &pb.Message_Discover{Ns: q.NS, Limit: q.Limit}
	if q.Cookie != nil {
		d.Cookie = q.Cookie
	}
	resp, err := c.exchange(ctx, &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: d})
	if err != nil {
		return nil, nil, err
	}
	dr := resp.GetDiscoverResponse()
	if resp.Type == nil || resp.GetType() != pb.Message_DISCOVER_RESPONSE || dr == nil || dr.Status == nil {
		return nil, nil, fmt.Errorf("%w: not a DISCOVER_RESPONSE with a status", ErrRustMalformed)
	}
	if dr.GetStatus() != rendezvous.StatusOK {
		return nil, nil, &rendezvous.Error{Status: dr.GetStatus()}
	}
	if dr.Cookie == nil {
		return nil, nil, fmt.Errorf("%w: OK DISCOVER_RESPONSE without cookie", ErrRustMalformed)
	}
	regs := make([]RustRegistration, 0, len(dr.GetRegistrations()))
	for _, r := range dr.GetRegistrations() {
		reg, err := decodeRustRegistration(r)
		if err != nil {
			return nil, nil, err
		}
		regs = append(regs, reg)
	}
	if _, err := parseRustCookie(dr.Cookie); err != nil {
		return nil, nil, err
	}
	return regs, dr.Cookie, nil
}

func decodeRustRegistration(r *pb.Message_Register) (RustRegistration, error) {
	if r.Ns == nil || len(r.GetNs()) > rustMaxNamespace {
		return RustRegistration{}, fmt.Errorf("%w: registration without a valid ns", ErrRustMalformed)
	}
	if r.SignedPeerRecord == nil {
		return RustRegistration{}, fmt.Errorf("%w: registration without a record", ErrRustMalformed)
	}
	rec, kind, err := OpenRecord(r.GetSignedPeerRecord())
	if err != nil {
		return RustRegistration{}, fmt.Errorf("%w: %w", ErrRustMalformed, err)
	}
	if kind != Legacy {
		return RustRegistration{}, fmt.Errorf("%w: registered record is not in the libp2p-routing-state envelope", ErrRustMalformed)
	}
	if r.Ttl == nil {
		return RustRegistration{}, fmt.Errorf("%w: registration without ttl", ErrRustMalformed)
	}
	return RustRegistration{
		NS:   r.GetNs(),
		Peer: peer.AddrInfo{ID: rec.PeerID, Addrs: rec.Addrs},
		TTL:  time.Duration(r.GetTtl()) * time.Second,
	}, nil
}

// exchange writes m on a stream of its own, closes the stream for writing
// and reads one response.
func (c *RustClient) exchange(ctx context.Context, m *pb.Message) (*pb.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, RustRequestTimeout)
	defer cancel()
	s, err := c.host.NewStream(ctx, c.point, rendezvous.ProtocolID)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	dl, _ := ctx.Deadline()
	_ = s.SetDeadline(dl)
	if err := WriteFrame(s, m); err != nil {
		_ = s.Reset()
		return nil, err
	}
	if err := s.CloseWrite(); err != nil {
		return nil, err
	}
	frame, err := ReadFrame(bufio.NewReader(s), RustMaxMessageSize)
	if err != nil {
		return nil, err
	}
	resp, err := Decode(frame)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRustMalformed, err)
	}
	return resp, nil
}
