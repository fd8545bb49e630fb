package scripted

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// NimVersion is a release of nim-libp2p whose rendezvous
// (libp2p/protocols/rendezvous.nim) is modelled.
type NimVersion int

const (
	// Nim17 is nim-libp2p 1.7.1: a DISCOVER must carry `ns`, an empty one
	// makes the point's process exit, and its client reads responses of at
	// most 64 KiB.
	Nim17 NimVersion = iota + 1
	// Nim115 is nim-libp2p 1.15.3: a DISCOVER without `ns` lists every
	// namespace, one with `ns` "" gets E_INVALID_NAMESPACE, and its client
	// reads responses of at most 4 MiB.
	Nim115
)

// String names the release.
func (v NimVersion) String() string {
	switch v {
	case Nim17:
		return "nim-libp2p 1.7.1"
	case Nim115:
		return "nim-libp2p 1.15.3"
	}
	return fmt.Sprintf("nim-libp2p version %d", int(v))
}

// MaxResponseSize is the largest DISCOVER response the release's client
// reads; a larger one fails the request.
func (v NimVersion) MaxResponseSize() int {
	if v == Nim17 {
		return 64 << 10
	}
	return 4 << 20
}

// Limits of nim-libp2p's rendezvous, the same in both releases.
const (
	// NimMaxRequestSize is the largest request its point reads; a larger
	// one is closed unanswered. Its client reads REGISTER responses with
	// the same cap.
	NimMaxRequestSize = 4096
	// NimDefaultMinTTL is its point's default minimum TTL, also what a
	// REGISTER without `ttl` is granted and what its client asks for.
	NimDefaultMinTTL = 2 * time.Hour
	// NimMaxTTL is its longest TTL: its point refuses more, its client
	// drops discovered registrations with more (or with no `ttl`).
	NimMaxTTL = 72 * time.Hour
	// NimDiscoverLimit caps a DISCOVER; it is also the limit of one
	// without `limit`.
	NimDiscoverLimit = 1000
	// NimMaxKeptCookie is the size from which its client does not keep a
	// cookie: it keeps those shorter than this, per point and namespace.
	NimMaxKeptCookie = 1000
	// NimMaxRegistrationsPerPeer is the live registrations a peer may hold
	// at its point; one more REGISTER, a refresh too, is E_NOT_AUTHORIZED.
	NimMaxRegistrationsPerPeer = 1000

	nimMaxNamespace = 255
	nimIdleTimeout  = 30 * time.Second // bounds a scripted stream; nim has none
)

// Errors of the scripted nim peers.
var (
	// ErrNimUndecodable is a message nim-libp2p's decoder refuses: a field
	// it requires is missing, or the protobuf is malformed. Its point
	// closes the stream unanswered; its client fails the request.
	ErrNimUndecodable = errors.New("nim: message undecodable")
	// ErrNimNotAPoint is a peer whose identify does not list
	// /rendezvous/1.0.0: nim's client never sends it a DISCOVER (it skips
	// it silently; the scripted client says so).
	ErrNimNotAPoint = errors.New("nim client: peer does not list /rendezvous/1.0.0 in identify")
	// ErrNimCrashed is what a NimPoint records when a request took its
	// process down.
	ErrNimCrashed = errors.New("nim 1.7 point: process exited (DISCOVER with ns \"\" and no usable cookie)")
)

// nimDecode decodes a message as nim's rendezvous.nim does: `type` is
// required, and so is, in each sub-message present, `ns` and
// `signedPeerRecord` of a Register (the registrations of a response
// included), `ns` of an Unregister, `status` of both responses, and in
// 1.7 `ns` of a Discover. A registration that fails fails the whole
// message.
func nimDecode(v NimVersion, b []byte) (*pb.Message, error) {
	m, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNimUndecodable, err)
	}
	missing := func(field string) error { return fmt.Errorf("%w: no %s", ErrNimUndecodable, field) }
	if m.Type == nil { // also an enum value it does not know
		return nil, missing("type")
	}
	if r := m.Register; r != nil && (r.Ns == nil || r.SignedPeerRecord == nil) {
		return nil, missing("ns or signedPeerRecord in register")
	}
	if r := m.RegisterResponse; r != nil && r.Status == nil {
		return nil, missing("status in registerResponse")
	}
	if u := m.Unregister; u != nil && u.Ns == nil {
		return nil, missing("ns in unregister")
	}
	if d := m.Discover; d != nil && v == Nim17 && d.Ns == nil {
		return nil, missing("ns in discover")
	}
	if d := m.DiscoverResponse; d != nil {
		if d.Status == nil {
			return nil, missing("status in discoverResponse")
		}
		for _, r := range d.Registrations {
			if r.Ns == nil || r.SignedPeerRecord == nil {
				return nil, missing("ns or signedPeerRecord in a registration")
			}
		}
	}
	return m, nil
}

// nimCookie is the cookie of nim's point: a protobuf with the index of the
// registration to continue after (field 1) and the namespace asked
// (field 2; in 1.15 only when the DISCOVER had one).
type nimCookie struct {
	offset uint64
	ns     string
	hasNS  bool
}

func (v NimVersion) encodeCookie(c nimCookie) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, c.offset)
	if c.hasNS || v == Nim17 {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, c.ns)
	}
	return b
}

// decodeCookie parses a cookie as nim's point does: the offset is
// required, and in 1.7 the namespace too. Any cookie field present is
// parsed, so an empty one is invalid.
func (v NimVersion) decodeCookie(b []byte) (nimCookie, error) {
	var (
		c         nimCookie
		hasOffset bool
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nimCookie{}, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			c.offset, n = protowire.ConsumeVarint(b)
			hasOffset = true
		case num == 2 && typ == protowire.BytesType:
			var s []byte
			s, n = protowire.ConsumeBytes(b)
			c.ns, c.hasNS = string(s), true
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nimCookie{}, protowire.ParseError(n)
		}
		b = b[n:]
	}
	if !hasOffset || (v == Nim17 && !c.hasNS) {
		return nimCookie{}, errors.New("cookie lacks a required field")
	}
	return c, nil
}

// NimEvent is one request a NimPoint read and what it did with it.
type NimEvent struct {
	Peer peer.ID
	// Request is the message as decoded; nil if it did not decode.
	Request *pb.Message
	// Response is what was answered; nil for an UNREGISTER and a dropped
	// request.
	Response *pb.Message
	// Renewed is true for a granted REGISTER that found the peer's earlier
	// registration in the namespace still live.
	Renewed bool
	// Dropped says why the stream was closed unanswered; nil otherwise.
	Dropped error
}

// NimPoint is a rendezvous point that behaves as nim-libp2p's: one request
// per stream (at most NimMaxRequestSize bytes), strict decoding, the
// standard envelope only, TTLs outside its range refused, E_INVALID_NAMESPACE
// for a namespace nobody registered in, protobuf cookies, and each
// version's handling of the empty namespace (1.7's process exit
// included). Everything it answers carries every field nim writes, zeros
// too.
//
// Its registrations are kept as nim keeps them: each REGISTER gets the
// next index, a namespace lists every index ever registered in it, and a
// cookie is the index to continue after. Like nim's, a page that stops at
// its limit makes the first registration left out the cookie's offset,
// which the next page then skips.
type NimPoint struct {
	host    host.Host
	version NimVersion
	minTTL  time.Duration
	maxTTL  time.Duration
	book    Book
	events  chan NimEvent
	crashed chan struct{}
	crash   sync.Once

	mu    sync.Mutex
	high  uint64              // the last index given (nim's registered.high)
	index map[string][]uint64 // every index ever registered, per namespace
}

// NimPointOption configures a NimPoint.
type NimPointOption func(*NimPoint) error

// WithNimTTLRange sets the TTLs the point accepts; a REGISTER without
// `ttl` gets minTTL. nim-libp2p accepts a minimum down to 1 min; tests
// may go down to 1 s to see refreshes quickly. Default [2 h, 72 h].
func WithNimTTLRange(minTTL, maxTTL time.Duration) NimPointOption {
	return func(p *NimPoint) error {
		if minTTL < time.Second || minTTL%time.Second != 0 || maxTTL%time.Second != 0 || maxTTL <= minTTL || maxTTL > NimMaxTTL {
			return fmt.Errorf("nim point: TTL range [%v, %v] is not whole seconds within [1s, %v]", minTTL, maxTTL, NimMaxTTL)
		}
		p.minTTL, p.maxTTL = minTTL, maxTTL
		return nil
	}
}

// NewNimPoint mounts a point behaving as the given nim-libp2p release on
// h. Close unmounts it; a 1.7 point that crashes closes h.
func NewNimPoint(h host.Host, v NimVersion, opts ...NimPointOption) (*NimPoint, error) {
	if v != Nim17 && v != Nim115 {
		return nil, fmt.Errorf("nim point: unknown version %d", int(v))
	}
	p := &NimPoint{
		host:    h,
		version: v,
		minTTL:  NimDefaultMinTTL,
		maxTTL:  NimMaxTTL,
		events:  make(chan NimEvent, 1024),
		crashed: make(chan struct{}),
		index:   make(map[string][]uint64),
	}
	for _, opt := range opts {
		if err := opt(p); err != nil {
			return nil, err
		}
	}
	h.SetStreamHandler(rendezvous.ProtocolID, p.handle)
	return p, nil
}

// Close unmounts the point.
func (p *NimPoint) Close() { p.host.RemoveStreamHandler(rendezvous.ProtocolID) }

// Book returns the registrations the point holds.
func (p *NimPoint) Book() *Book { return &p.book }

// Registrations returns the live registrations in ns (every one for "").
func (p *NimPoint) Registrations(ns string) []Entry {
	return p.book.Live(time.Now(), func(e Entry) bool { return ns == "" || e.NS == ns })
}

// Events returns the requests the point read, in order, as they are
// handled (before the answer is written). It holds the last 1024 unread;
// later ones are lost.
func (p *NimPoint) Events() <-chan NimEvent { return p.events }

// Crashed is closed when a request has taken the point's process down
// (1.7 only), once its host is closed.
func (p *NimPoint) Crashed() <-chan struct{} { return p.crashed }

func (p *NimPoint) emit(ev NimEvent) {
	select {
	case p.events <- ev:
	default:
	}
}

func (p *NimPoint) handle(s network.Stream) {
	defer s.Close() // nim closes the stream after one request, answered or not
	_ = s.SetDeadline(time.Now().Add(nimIdleTimeout))
	ev := NimEvent{Peer: s.Conn().RemotePeer()}
	buf, err := ReadFrame(bufio.NewReader(s), NimMaxRequestSize)
	if err == nil {
		ev.Request, err = nimDecode(p.version, buf)
	}
	if err == nil {
		ev.Response, err = p.answer(&ev)
	}
	ev.Dropped = err
	p.emit(ev)
	if errors.Is(err, ErrNimCrashed) {
		_ = s.Reset()
		p.crash.Do(func() {
			go func() {
				_ = p.host.Close()
				close(p.crashed)
			}()
		})
		return
	}
	if ev.Response != nil {
		_ = WriteFrame(s, ev.Response)
	}
}

// answer carries out a decoded request and returns the response (nil for
// UNREGISTER), or why the stream is closed unanswered.
func (p *NimPoint) answer(ev *NimEvent) (*pb.Message, error) {
	req := ev.Request
	switch req.GetType() {
	case pb.Message_REGISTER:
		if req.Register == nil {
			return nil, fmt.Errorf("%w: REGISTER without register", ErrNimUndecodable)
		}
		return p.register(ev, req.Register), nil
	case pb.Message_UNREGISTER:
		if req.Unregister == nil {
			return nil, fmt.Errorf("%w: UNREGISTER without unregister", ErrNimUndecodable)
		}
		ns := req.Unregister.GetNs()
		p.book.Remove(func(e Entry) bool { return e.NS == ns && e.Peer == ev.Peer })
		return nil, nil
	case pb.Message_DISCOVER:
		if req.Discover == nil {
			return nil, fmt.Errorf("%w: DISCOVER without discover", ErrNimUndecodable)
		}
		return p.discover(req.Discover)
	default:
		return nil, fmt.Errorf("unexpected %s from a client", req.GetType())
	}
}

func nimRegisterError(status rendezvous.Status, text string) *pb.Message {
	return &pb.Message{
		Type:             pb.Message_REGISTER_RESPONSE.Enum(),
		RegisterResponse: &pb.Message_RegisterResponse{Status: status.Enum(), StatusText: proto.String(text)},
	}
}

func (p *NimPoint) register(ev *NimEvent, r *pb.Message_Register) *pb.Message {
	ns := r.GetNs()
	if len(ns) < 1 || len(ns) > nimMaxNamespace {
		return nimRegisterError(rendezvous.StatusInvalidNamespace, "")
	}
	secs := uint64(p.minTTL / time.Second)
	if r.Ttl != nil {
		secs = r.GetTtl()
	}
	if secs < uint64(p.minTTL/time.Second) || secs > uint64(p.maxTTL/time.Second) {
		return nimRegisterError(rendezvous.StatusInvalidTTL, "")
	}
	if len(r.GetSignedPeerRecord()) == 0 {
		return nimRegisterError(rendezvous.StatusInvalidSignedPeerRecord, "Empty peer record")
	}
	rec, env, err := OpenRecord(r.GetSignedPeerRecord())
	switch {
	case err != nil || env != Standard:
		return nimRegisterError(rendezvous.StatusInvalidSignedPeerRecord, "not a libp2p-peer-record envelope")
	case rec.PeerID != ev.Peer:
		return nimRegisterError(rendezvous.StatusInvalidSignedPeerRecord, "Bad Peer ID")
	}
	now := time.Now()
	if p.book.Count(now, func(e Entry) bool { return e.Peer == ev.Peer }) >= NimMaxRegistrationsPerPeer {
		return nimRegisterError(rendezvous.StatusNotAuthorized, "Registration limit reached")
	}
	ttl := time.Duration(secs) * time.Second
	p.mu.Lock()
	ev.Renewed = p.book.Count(now, func(e Entry) bool { return e.NS == ns && e.Peer == ev.Peer }) > 0
	seq := p.book.Put(ns, ev.Peer, r.GetSignedPeerRecord(), ttl, now)
	p.high = seq
	p.index[ns] = append(p.index[ns], seq)
	p.mu.Unlock()
	return &pb.Message{
		Type:             pb.Message_REGISTER_RESPONSE.Enum(),
		RegisterResponse: &pb.Message_RegisterResponse{Status: rendezvous.StatusOK.Enum(), Ttl: proto.Uint64(secs)},
	}
}

func nimDiscoverError(status rendezvous.Status) *pb.Message {
	return &pb.Message{
		Type:             pb.Message_DISCOVER_RESPONSE.Enum(),
		DiscoverResponse: &pb.Message_DiscoverResponse{Status: status.Enum(), StatusText: proto.String("")},
	}
}

// discover answers a DISCOVER as nim's point does, or returns
// ErrNimCrashed where 1.7's process exits.
func (p *NimPoint) discover(d *pb.Message_Discover) (*pb.Message, error) {
	hasNS := d.Ns != nil || p.version == Nim17
	ns := d.GetNs()
	if hasNS && len(ns) > nimMaxNamespace {
		return nimDiscoverError(rendezvous.StatusInvalidNamespace), nil
	}
	limit := uint64(NimDiscoverLimit)
	if d.Limit != nil {
		limit = min(limit, d.GetLimit())
	}
	const low = 1 // nim's registered.low(): expired registrations are never flushed here
	p.mu.Lock()
	defer p.mu.Unlock()
	high := p.high

	var cookie nimCookie // no cookie: offset low-1
	if d.Cookie != nil {
		c, err := p.version.decodeCookie(d.Cookie)
		if err != nil {
			return nimDiscoverError(rendezvous.StatusInvalidCookie), nil
		}
		cookie = c
		otherNS := cookie.ns != ns
		if p.version == Nim115 {
			otherNS = d.Ns != nil && cookie.hasNS && cookie.ns != ns
		}
		if otherNS || cookie.offset < low || cookie.offset > high {
			cookie = nimCookie{offset: low - 1}
		}
	}

	var indices []uint64
	switch {
	case p.version == Nim115 && d.Ns != nil, p.version == Nim17 && ns != "":
		known, ok := p.index[ns]
		if !ok {
			return nimDiscoverError(rendezvous.StatusInvalidNamespace), nil
		}
		indices = known
	case p.version == Nim17 && cookie.offset < low:
		// toSeq(cookie.offset..high) then reads registered[low-1]: an
		// IndexDefect, which nim does not catch.
		return nil, ErrNimCrashed
	default:
		for i := max(cookie.offset, low); i <= high; i++ {
			indices = append(indices, i)
		}
	}
	respCookie := nimCookie{ns: ns, hasNS: hasNS}
	var regs []*pb.Message_Register
	if len(indices) > 0 {
		respCookie.offset = indices[len(indices)-1]
		now := time.Now()
		live := make(map[uint64]Entry)
		for _, e := range p.book.Live(now, nil) {
			live[e.Seq] = e
		}
		for _, i := range indices {
			if limit == 0 {
				respCookie.offset = i // left out, and skipped by the next page
				break
			}
			e, ok := live[i]
			if !ok || i <= cookie.offset {
				continue
			}
			limit--
			regs = append(regs, &pb.Message_Register{
				Ns:               proto.String(e.NS),
				SignedPeerRecord: e.Record,
				Ttl:              proto.Uint64(uint64(e.Expires.Sub(now) / time.Second)),
			})
		}
		rand.Shuffle(len(regs), func(i, j int) { regs[i], regs[j] = regs[j], regs[i] })
	} else {
		respCookie = nimCookie{hasNS: p.version == Nim17} // nim's Cookie()
	}
	return &pb.Message{
		Type: pb.Message_DISCOVER_RESPONSE.Enum(),
		DiscoverResponse: &pb.Message_DiscoverResponse{
			Registrations: regs,
			Cookie:        p.version.encodeCookie(respCookie),
			Status:        rendezvous.StatusOK.Enum(),
		},
	}, nil
}

// NimRegistration is a registration a NimClient kept from a DISCOVER.
type NimRegistration struct {
	NS     string
	Record *peer.PeerRecord
	TTL    time.Duration
}

// NimClient is a rendezvous client that behaves as nim-libp2p's: one
// request per stream, every field written (a DISCOVER carries a cookie
// only when it kept one for the point and namespace), strict decoding of
// the answers, a read cap per response (4096 bytes for a REGISTER's, the
// version's MaxResponseSize for a DISCOVER's), DISCOVER only to peers whose
// identify lists /rendezvous/1.0.0, and registrations without `ttl`, with
// more than 72 h or in another envelope than the standard one dropped.
type NimClient struct {
	host    host.Host
	version NimVersion
	addrs   []ma.Multiaddr

	mu      sync.Mutex
	cookies map[peer.ID]map[string][]byte
}

// NimClientOption configures a NimClient.
type NimClientOption func(*NimClient)

// WithNimAdvertisedAddrs sets the addresses of the record the client
// registers, in place of its host's.
func WithNimAdvertisedAddrs(addrs ...ma.Multiaddr) NimClientOption {
	return func(c *NimClient) { c.addrs = addrs }
}

// NewNimClient returns a client of h behaving as the given nim-libp2p
// release.
func NewNimClient(h host.Host, v NimVersion, opts ...NimClientOption) *NimClient {
	c := &NimClient{host: h, version: v, cookies: make(map[peer.ID]map[string][]byte)}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// Cookie returns the cookie the client keeps for point and ns, nil if
// none.
func (c *NimClient) Cookie(point peer.ID, ns string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cookies[point][ns]
}

// Register registers the client's host in ns at point for ttl (0 for
// NimDefaultMinTTL), as nim's advertise does, and returns the TTL the
// point granted (what was asked if it says none). A TTL outside
// [NimDefaultMinTTL, NimMaxTTL] is refused before any I/O.
func (c *NimClient) Register(ctx context.Context, point peer.AddrInfo, ns string, ttl time.Duration) (time.Duration, error) {
	if ttl == 0 {
		ttl = NimDefaultMinTTL
	}
	if len(ns) < 1 || len(ns) > nimMaxNamespace {
		return 0, errors.New("nim client: invalid namespace")
	}
	if ttl < NimDefaultMinTTL || ttl > NimMaxTTL {
		return 0, fmt.Errorf("nim client: invalid time to live %v", ttl)
	}
	record, err := SealRecord(c.host, Standard, c.addrs...)
	if err != nil {
		return 0, err
	}
	req := &pb.Message{
		Type: pb.Message_REGISTER.Enum(),
		Register: &pb.Message_Register{
			Ns:               proto.String(ns),
			SignedPeerRecord: record,
			Ttl:              proto.Uint64(uint64(ttl / time.Second)),
		},
	}
	resp, err := c.exchange(ctx, point, req, NimMaxRequestSize)
	if err != nil {
		return 0, err
	}
	r := resp.RegisterResponse
	if resp.GetType() != pb.Message_REGISTER_RESPONSE || r == nil {
		return 0, fmt.Errorf("nim client: unexpected register response %s", resp.GetType())
	}
	if r.GetStatus() != rendezvous.StatusOK {
		return 0, &rendezvous.Error{Status: r.GetStatus(), Text: r.GetStatusText()}
	}
	if r.Ttl == nil {
		return ttl, nil
	}
	return time.Duration(r.GetTtl()) * time.Second, nil
}

// Unregister sends an UNREGISTER for ns to point and closes the stream at
// once, as nim's unsubscribe does: it does not wait for the point.
func (c *NimClient) Unregister(ctx context.Context, point peer.AddrInfo, ns string) error {
	if len(ns) < 1 || len(ns) > nimMaxNamespace {
		return errors.New("nim client: invalid namespace")
	}
	s, err := c.open(ctx, point)
	if err != nil {
		return err
	}
	defer s.Close()
	req := &pb.Message{Type: pb.Message_UNREGISTER.Enum(), Unregister: &pb.Message_Unregister{Ns: proto.String(ns)}}
	return WriteFrame(s, req)
}

// Discover asks point for at most limit (1 to NimDiscoverLimit)
// registrations in ns, continuing after the cookie kept from the last
// answer, and keeps the answer's cookie if it is shorter than
// NimMaxKeptCookie. For every namespace, ns is "": 1.7 writes `ns` "",
// 1.15 leaves `ns` out and then neither sends nor keeps cookies. Like
// nim's request, it returns one registration per peer (the newest record,
// then the longest TTL).
func (c *NimClient) Discover(ctx context.Context, point peer.AddrInfo, ns string, limit int) ([]NimRegistration, error) {
	if limit <= 0 || limit > NimDiscoverLimit {
		return nil, errors.New("nim client: invalid limit")
	}
	if len(ns) > nimMaxNamespace {
		return nil, errors.New("nim client: invalid namespace")
	}
	if err := nimConnect(ctx, c.host, point); err != nil {
		return nil, err
	}
	if ps, err := c.host.Peerstore().SupportsProtocols(point.ID, rendezvous.ProtocolID); err != nil || len(ps) == 0 {
		return nil, ErrNimNotAPoint
	}
	withNS := ns != "" || c.version == Nim17
	d := &pb.Message_Discover{Limit: proto.Uint64(uint64(limit))}
	if withNS {
		d.Ns = proto.String(ns)
		if cookie := c.Cookie(point.ID, ns); cookie != nil {
			d.Cookie = cookie
		}
	}
	resp, err := c.exchange(ctx, point, &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: d}, c.version.MaxResponseSize())
	if err != nil {
		return nil, err
	}
	r := resp.DiscoverResponse
	if resp.GetType() != pb.Message_DISCOVER_RESPONSE || r == nil {
		return nil, fmt.Errorf("nim client: unexpected discover response %s", resp.GetType())
	}
	if r.GetStatus() != rendezvous.StatusOK {
		return nil, &rendezvous.Error{Status: r.GetStatus(), Text: r.GetStatusText()}
	}
	if r.Cookie != nil && withNS && len(r.Cookie) < NimMaxKeptCookie {
		c.mu.Lock()
		if c.cookies[point.ID] == nil {
			c.cookies[point.ID] = make(map[string][]byte)
		}
		c.cookies[point.ID][ns] = r.Cookie
		c.mu.Unlock()
	}
	return nimKeep(r.Registrations, limit), nil
}

// nimKeep returns the registrations nim's client keeps from a response:
// at most limit, one per peer, none without `ttl`, with more than
// NimMaxTTL or with a record that is not a valid standard envelope.
func nimKeep(regs []*pb.Message_Register, limit int) []NimRegistration {
	var (
		order []peer.ID
		kept  = make(map[peer.ID]NimRegistration)
	)
	for _, r := range regs {
		if limit == 0 {
			break
		}
		if r.Ttl == nil || r.GetTtl() > uint64(NimMaxTTL/time.Second) {
			continue
		}
		rec, env, err := OpenRecord(r.GetSignedPeerRecord())
		if err != nil || env != Standard {
			continue
		}
		reg := NimRegistration{NS: r.GetNs(), Record: rec, TTL: time.Duration(r.GetTtl()) * time.Second}
		old, seen := kept[rec.PeerID]
		switch {
		case !seen:
			order = append(order, rec.PeerID)
			kept[rec.PeerID] = reg
		case old.Record.Seq < rec.Seq || (old.Record.Seq == rec.Seq && old.TTL < reg.TTL):
			kept[rec.PeerID] = reg
		}
		limit--
	}
	out := make([]NimRegistration, 0, len(order))
	for _, id := range order {
		out = append(out, kept[id])
	}
	return out
}

// exchange sends req on a stream of its own and reads one answer of at
// most limit bytes, decoded strictly.
func (c *NimClient) exchange(ctx context.Context, point peer.AddrInfo, req *pb.Message, limit int) (*pb.Message, error) {
	s, err := c.open(ctx, point)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := WriteFrame(s, req); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("nim client: sending %s: %w", req.GetType(), err)
	}
	buf, err := ReadFrame(bufio.NewReader(s), limit)
	if err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("nim client: reading the answer to %s: %w", req.GetType(), err)
	}
	return nimDecode(c.version, buf)
}

func (c *NimClient) open(ctx context.Context, point peer.AddrInfo) (network.Stream, error) {
	c.host.Peerstore().AddAddrs(point.ID, point.Addrs, time.Hour)
	s, err := c.host.NewStream(ctx, point.ID, rendezvous.ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("nim client: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	return s, nil
}

// nimConnect connects h to pi and waits for identify to complete on every
// connection, so the peerstore holds the protocols pi serves.
func nimConnect(ctx context.Context, h host.Host, pi peer.AddrInfo) error {
	if err := h.Connect(ctx, pi); err != nil {
		return fmt.Errorf("nim client: %w", err)
	}
	ids, ok := h.(interface{ IDService() identify.IDService })
	if !ok {
		return nil
	}
	for _, conn := range h.Network().ConnsToPeer(pi.ID) {
		select {
		case <-ids.IDService().IdentifyWait(conn):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
