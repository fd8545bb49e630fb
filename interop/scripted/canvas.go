package scripted

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// Limits of @canvas-js/libp2p-rendezvous (0.5.2).
const (
	// CanvasMaxMessageSize is the largest frame it-length-prefixed reads.
	CanvasMaxMessageSize = 4 << 20
	// CanvasDefaultMaxTTL is its server's maxRegistrationTTL: a longer TTL
	// is lowered to it, and an absent (0) one is raised to it.
	CanvasDefaultMaxTTL = 2 * time.Hour
	// CanvasDefaultMaxLimit is its server's maxDiscoverLimit: a larger (or
	// absent) limit is replaced by it.
	CanvasDefaultMaxLimit = 64

	// canvasMaxNamespace bounds a namespace in UTF-16 code units
	// (JavaScript's String length), exclusive.
	canvasMaxNamespace = 256
	canvasCookieLen    = 8
	// canvasCloseWait bounds the wait for the point to close a session.
	canvasCloseWait = 10 * time.Second
)

// CanvasEvent is one request a CanvasPoint read and what it did with it.
type CanvasEvent struct {
	Peer peer.ID
	At   time.Time
	// Request is the message read; nil if the frame was not protobuf.
	Request *pb.Message
	// Response is what was answered, as written (zero fields omitted); nil
	// for UNREGISTER and on a reset.
	Response *pb.Message
	// Reset says why the point reset the stream; nil if it did not.
	Reset error
}

// CanvasPoint is a rendezvous point that behaves like the JavaScript one
// (@canvas-js/libp2p-rendezvous 0.5.2): its codec is proto3-style, so an
// absent field reads as zero (no `type` is a REGISTER, no `ns` the
// namespace "") and zero fields are not written (no `status` when OK, no
// `type` for REGISTER); it answers several requests per stream in order;
// it never answers with an error status but resets the stream; it grants
// at most its maximum TTL (an absent one gets the maximum), with no
// minimum; it returns at most 64 registrations; its cookies are 8-byte row
// ids and its paging is buggy: a page holds the newest registrations after
// the cookie and hands back the id of its oldest, so the next page repeats
// all but one of them. It accepts a record signed by any key, as long as
// the signature holds in the standard envelope.
type CanvasPoint struct {
	host     host.Host
	protocol protocol.ID
	maxTTL   time.Duration
	maxLimit uint64
	book     Book
	events   chan CanvasEvent
}

// CanvasPointOption configures a CanvasPoint.
type CanvasPointOption func(*CanvasPoint)

// WithCanvasPointProtocol sets the protocol ID served,
// rendezvous.CanvasProtocolID by default.
func WithCanvasPointProtocol(id protocol.ID) CanvasPointOption {
	return func(p *CanvasPoint) { p.protocol = id }
}

// WithCanvasMaxTTL sets the point's maxRegistrationTTL
// (CanvasDefaultMaxTTL by default).
func WithCanvasMaxTTL(d time.Duration) CanvasPointOption {
	return func(p *CanvasPoint) { p.maxTTL = d }
}

// NewCanvasPoint mounts a canvas-like point on h.
func NewCanvasPoint(h host.Host, opts ...CanvasPointOption) *CanvasPoint {
	p := &CanvasPoint{
		host:     h,
		protocol: rendezvous.CanvasProtocolID,
		maxTTL:   CanvasDefaultMaxTTL,
		maxLimit: CanvasDefaultMaxLimit,
		events:   make(chan CanvasEvent, 1024),
	}
	for _, opt := range opts {
		opt(p)
	}
	h.SetStreamHandler(p.protocol, p.handle)
	return p
}

// Close unmounts the point.
func (p *CanvasPoint) Close() { p.host.RemoveStreamHandler(p.protocol) }

// Book returns the registrations the point holds; an entry's Seq is its
// row id.
func (p *CanvasPoint) Book() *Book { return &p.book }

// Events delivers every request the point read, as it handles it. Events
// beyond its buffer (1024) are not kept.
func (p *CanvasPoint) Events() <-chan CanvasEvent { return p.events }

func (p *CanvasPoint) handle(s network.Stream) {
	remote := s.Conn().RemotePeer()
	r := bufio.NewReader(s)
	for {
		frame, err := ReadFrame(r, CanvasMaxMessageSize)
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = s.Close() // the pipe ends with the requests
			} else {
				_ = s.Reset()
			}
			return
		}
		ev := CanvasEvent{Peer: remote, At: time.Now()}
		ev.Request, ev.Reset = Decode(frame)
		if ev.Reset == nil {
			ev.Response, ev.Reset = p.answer(remote, ev.Request, ev.At)
		}
		if ev.Reset == nil && ev.Response != nil {
			ev.Response = CanvasEncode(ev.Response)
			ev.Reset = WriteFrame(s, ev.Response)
		}
		select {
		case p.events <- ev:
		default:
		}
		if ev.Reset != nil {
			_ = s.Reset()
			return
		}
	}
}

// answer handles one request as the canvas server does; an error resets
// the stream.
func (p *CanvasPoint) answer(remote peer.ID, m *pb.Message, now time.Time) (*pb.Message, error) {
	switch m.GetType() { // absent is REGISTER
	case pb.Message_REGISTER:
		r := m.GetRegister()
		if r == nil {
			return nil, errors.New("invalid REGISTER message")
		}
		if err := checkCanvasNamespace(r.GetNs()); err != nil {
			return nil, err
		}
		ttl := p.maxTTL
		if secs := r.GetTtl(); secs != 0 && secs < uint64(p.maxTTL/time.Second) {
			ttl = time.Duration(secs) * time.Second
		}
		// peerStore.consumePeerRecord verifies the signature; that the
		// signer is the remote peer is not checked (its result is ignored).
		if _, _, err := record.ConsumeEnvelope(r.GetSignedPeerRecord(), peer.PeerRecordEnvelopeDomain); err != nil {
			return nil, fmt.Errorf("peer record: %w", err)
		}
		p.book.Put(r.GetNs(), remote, r.GetSignedPeerRecord(), ttl, now)
		return &pb.Message{
			Type: pb.Message_REGISTER_RESPONSE.Enum(),
			RegisterResponse: &pb.Message_RegisterResponse{
				Status: rendezvous.StatusOK.Enum(), StatusText: proto.String("OK"), Ttl: proto.Uint64(uint64(ttl / time.Second)),
			},
		}, nil
	case pb.Message_UNREGISTER:
		u := m.GetUnregister()
		if u == nil {
			return nil, errors.New("invalid UNREGISTER message")
		}
		if err := checkCanvasNamespace(u.GetNs()); err != nil {
			return nil, err
		}
		p.book.Remove(func(e Entry) bool { return e.Peer == remote && e.NS == u.GetNs() })
		return nil, nil
	case pb.Message_DISCOVER:
		return p.discover(m.GetDiscover(), now)
	default:
		return nil, errors.New("invalid request message type")
	}
}

func (p *CanvasPoint) discover(d *pb.Message_Discover, now time.Time) (*pb.Message, error) {
	if d == nil {
		return nil, errors.New("invalid DISCOVER message")
	}
	ns := d.GetNs()
	if err := checkCanvasNamespace(ns); err != nil {
		return nil, err
	}
	limit := p.maxLimit
	if l := d.GetLimit(); l != 0 && l < limit {
		limit = l
	}
	var cursor uint64
	if c := d.GetCookie(); len(c) > 0 {
		if len(c) != canvasCookieLen {
			return nil, errors.New("invalid cookie")
		}
		cursor = binary.BigEndian.Uint64(c)
	}
	rows := p.book.Live(now, func(e Entry) bool { return e.Seq > cursor && e.NS == ns })
	slices.Reverse(rows) // ORDER BY id DESC
	resp := &pb.Message_DiscoverResponse{Status: rendezvous.StatusOK.Enum(), StatusText: proto.String("OK")}
	last := cursor
	for _, e := range rows[:min(uint64(len(rows)), limit)] {
		resp.Registrations = append(resp.Registrations, &pb.Message_Register{
			Ns:               proto.String(ns),
			SignedPeerRecord: e.Record,
			Ttl:              proto.Uint64(uint64((e.Expires.Sub(now) + time.Second - 1) / time.Second)),
		})
		last = e.Seq // the oldest row of the page ends up as the cookie
	}
	resp.Cookie = binary.BigEndian.AppendUint64(nil, last)
	return &pb.Message{Type: pb.Message_DISCOVER_RESPONSE.Enum(), DiscoverResponse: resp}, nil
}

func checkCanvasNamespace(ns string) error {
	if len(utf16.Encode([]rune(ns))) >= canvasMaxNamespace {
		return errors.New("invalid namespace (expected ns.length < 256)")
	}
	return nil
}

// CanvasEncode returns m as canvas's proto3-style codec writes it: without
// the fields that hold their zero value (`type` REGISTER, `status` OK, an
// empty `ns`, `statusText` or `cookie`, a `ttl` or `limit` of 0).
func CanvasEncode(m *pb.Message) *pb.Message {
	m = proto.Clone(m).(*pb.Message)
	if m.GetType() == pb.Message_REGISTER {
		m.Type = nil
	}
	if r := m.Register; r != nil {
		omitZeroRegister(r)
	}
	if r := m.RegisterResponse; r != nil {
		r.Status = omitZero(r.Status)
		r.StatusText = omitZero(r.StatusText)
		r.Ttl = omitZero(r.Ttl)
	}
	if u := m.Unregister; u != nil {
		u.Ns = omitZero(u.Ns)
	}
	if d := m.Discover; d != nil {
		d.Ns = omitZero(d.Ns)
		d.Limit = omitZero(d.Limit)
		if len(d.Cookie) == 0 {
			d.Cookie = nil
		}
	}
	if d := m.DiscoverResponse; d != nil {
		for _, r := range d.Registrations {
			omitZeroRegister(r)
		}
		if len(d.Cookie) == 0 {
			d.Cookie = nil
		}
		d.Status = omitZero(d.Status)
		d.StatusText = omitZero(d.StatusText)
	}
	return m
}

func omitZeroRegister(r *pb.Message_Register) {
	r.Ns = omitZero(r.Ns)
	r.Ttl = omitZero(r.Ttl)
	if len(r.SignedPeerRecord) == 0 {
		r.SignedPeerRecord = nil
	}
}

func omitZero[T comparable](v *T) *T {
	var zero T
	if v == nil || *v == zero {
		return nil
	}
	return v
}

// CanvasClient is a rendezvous client that behaves like the JavaScript one
// (@canvas-js/libp2p-rendezvous 0.5.2): it speaks /canvas/rendezvous/1.0.0
// unless configured; a session is one stream on which requests are
// pipelined and matched to responses by order only; its codec omits zero
// fields (`type` for REGISTER, a `ttl` or `limit` of 0) and reads absent
// ones as zero; its DISCOVER never carries a cookie; it signs its record in
// the standard envelope with its addresses ending in /p2p/<id>; it rejects
// a DISCOVER_RESPONSE holding a registration in another namespace than the
// one asked, a record that does not verify in the standard envelope or
// that is signed by another peer than its own, and skips itself. An
// UNREGISTER last on its stream is not written: closing the stream cuts
// it off.
type CanvasClient struct {
	host         host.Host
	protocol     protocol.ID
	keepTrailing bool
}

// CanvasClientOption configures a CanvasClient.
type CanvasClientOption func(*CanvasClient)

// WithCanvasClientProtocol sets the protocol ID spoken,
// rendezvous.CanvasProtocolID by default.
func WithCanvasClientProtocol(id protocol.ID) CanvasClientOption {
	return func(c *CanvasClient) { c.protocol = id }
}

// CanvasKeepsTrailingUnregister makes a session write an UNREGISTER that
// is last on its stream before closing it, as when the caller holds the
// stream open long enough.
func CanvasKeepsTrailingUnregister() CanvasClientOption {
	return func(c *CanvasClient) { c.keepTrailing = true }
}

// NewCanvasClient returns a canvas-like client on h.
func NewCanvasClient(h host.Host, opts ...CanvasClientOption) *CanvasClient {
	c := &CanvasClient{host: h, protocol: rendezvous.CanvasProtocolID}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// CanvasSession is one stream to a point, on which requests are pipelined.
type CanvasSession struct {
	c    *CanvasClient
	s    network.Stream
	done chan struct{} // closed when the reader ends

	mu      sync.Mutex
	pending []chan canvasReply // requests awaiting their response, in order
	held    *pb.Message        // an UNREGISTER not written yet
	err     error              // why the stream ended, once it has
}

type canvasReply struct {
	m   *pb.Message
	err error
}

// Connect dials a point.
func (c *CanvasClient) Connect(ctx context.Context, point peer.AddrInfo) error {
	return c.host.Connect(ctx, point)
}

// Open opens a session with a point, as canvas's connect does for the
// lifetime of its callback.
func (c *CanvasClient) Open(ctx context.Context, point peer.ID) (*CanvasSession, error) {
	s, err := c.host.NewStream(ctx, point, c.protocol)
	if err != nil {
		return nil, err
	}
	cs := &CanvasSession{c: c, s: s, done: make(chan struct{})}
	go cs.read()
	return cs, nil
}

// read matches each response to the oldest request awaiting one; when the
// stream ends, every request still waiting fails.
func (cs *CanvasSession) read() {
	defer close(cs.done)
	r := bufio.NewReader(cs.s)
	for {
		frame, err := ReadFrame(r, CanvasMaxMessageSize)
		var m *pb.Message
		if err == nil {
			m, err = Decode(frame)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("stream ended prematurely")
			}
			cs.mu.Lock()
			cs.err = err
			waiting := cs.pending
			cs.pending = nil
			cs.mu.Unlock()
			for _, ch := range waiting {
				ch <- canvasReply{err: err}
			}
			return
		}
		cs.mu.Lock()
		if len(cs.pending) == 0 {
			cs.mu.Unlock()
			continue // nothing asked for it: canvas never reads it
		}
		ch := cs.pending[0]
		cs.pending = cs.pending[1:]
		cs.mu.Unlock()
		ch <- canvasReply{m: m}
	}
}

// push writes m (after an UNREGISTER held back), expecting a response
// unless it is an UNREGISTER.
func (cs *CanvasSession) push(m *pb.Message) chan canvasReply {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.err != nil {
		return canvasFailed(cs.err)
	}
	if cs.held != nil {
		if err := WriteFrame(cs.s, cs.held); err != nil {
			return canvasFailed(err)
		}
		cs.held = nil
	}
	if m.GetType() == pb.Message_UNREGISTER {
		cs.held = CanvasEncode(m)
		return nil
	}
	ch := make(chan canvasReply, 1)
	cs.pending = append(cs.pending, ch)
	if err := WriteFrame(cs.s, CanvasEncode(m)); err != nil {
		cs.pending = slices.DeleteFunc(cs.pending, func(c chan canvasReply) bool { return c == ch })
		ch <- canvasReply{err: err}
	}
	return ch
}

// CanvasRegisterCall is a pipelined REGISTER awaiting its response.
type CanvasRegisterCall struct{ reply chan canvasReply }

// CanvasDiscoverCall is a pipelined DISCOVER awaiting its response.
type CanvasDiscoverCall struct {
	cs    *CanvasSession
	ns    string
	reply chan canvasReply
}

// Register sends a REGISTER of the client's host in ns for ttl seconds (0
// is not written) without waiting for the response.
func (cs *CanvasSession) Register(ns string, ttl uint64) *CanvasRegisterCall {
	addrs := make([]ma.Multiaddr, 0, len(cs.c.host.Addrs()))
	suffix := ma.StringCast("/p2p/" + cs.c.host.ID().String())
	for _, a := range cs.c.host.Addrs() {
		addrs = append(addrs, a.Encapsulate(suffix))
	}
	if len(addrs) == 0 {
		return &CanvasRegisterCall{reply: canvasFailed(errors.New("no multiaddrs found"))}
	}
	data, err := SealRecord(cs.c.host, Standard, addrs...)
	if err != nil {
		return &CanvasRegisterCall{reply: canvasFailed(err)}
	}
	return &CanvasRegisterCall{reply: cs.push(&pb.Message{
		Type:     pb.Message_REGISTER.Enum(),
		Register: &pb.Message_Register{Ns: proto.String(ns), SignedPeerRecord: data, Ttl: proto.Uint64(ttl)},
	})}
}

// Wait returns the TTL granted (0 if the response carries none). A status
// other than OK is a *rendezvous.Error.
func (call *CanvasRegisterCall) Wait(ctx context.Context) (uint64, error) {
	m, err := waitCanvas(ctx, call.reply)
	if err != nil {
		return 0, err
	}
	r := m.GetRegisterResponse()
	if m.GetType() != pb.Message_REGISTER_RESPONSE || r == nil {
		return 0, errors.New("expected REGISTER_RESPONSE message")
	}
	if r.GetStatus() != rendezvous.StatusOK {
		return 0, &rendezvous.Error{Status: r.GetStatus(), Text: r.GetStatusText()}
	}
	return r.GetTtl(), nil
}

// Discover sends a DISCOVER in ns for at most limit registrations (0 is
// not written), with no cookie, without waiting for the response.
func (cs *CanvasSession) Discover(ns string, limit uint64) *CanvasDiscoverCall {
	return &CanvasDiscoverCall{cs: cs, ns: ns, reply: cs.push(&pb.Message{
		Type:     pb.Message_DISCOVER.Enum(),
		Discover: &pb.Message_Discover{Ns: proto.String(ns), Limit: proto.Uint64(limit)},
	})}
}

// Wait returns the peers found, without the client itself.
func (call *CanvasDiscoverCall) Wait(ctx context.Context) ([]peer.AddrInfo, error) {
	m, err := waitCanvas(ctx, call.reply)
	if err != nil {
		return nil, err
	}
	d := m.GetDiscoverResponse()
	if m.GetType() != pb.Message_DISCOVER_RESPONSE || d == nil {
		return nil, errors.New("expected DISCOVER_RESPONSE message")
	}
	if d.GetStatus() != rendezvous.StatusOK {
		return nil, &rendezvous.Error{Status: d.GetStatus(), Text: d.GetStatusText()}
	}
	var peers []peer.AddrInfo
	for _, r := range d.GetRegistrations() {
		if r.GetNs() != call.ns {
			return nil, errors.New("invalid namespace in registration")
		}
		env, rec, err := record.ConsumeEnvelope(r.GetSignedPeerRecord(), peer.PeerRecordEnvelopeDomain)
		if err != nil {
			return nil, fmt.Errorf("registration record: %w", err)
		}
		pr, ok := rec.(*peer.PeerRecord)
		if !ok {
			return nil, errors.New("registration record is not a peer record")
		}
		if signer, err := peer.IDFromPublicKey(env.PublicKey); err != nil || signer != pr.PeerID {
			return nil, errors.New("invalid peer id in registration")
		}
		if pr.PeerID != call.cs.c.host.ID() {
			peers = append(peers, peer.AddrInfo{ID: pr.PeerID, Addrs: pr.Addrs})
		}
	}
	return peers, nil
}

// Unregister sends an UNREGISTER of ns. It has no response; it is written
// when the next request is, and lost if the session closes first (unless
// CanvasKeepsTrailingUnregister).
func (cs *CanvasSession) Unregister(ns string) {
	cs.push(&pb.Message{Type: pb.Message_UNREGISTER.Enum(), Unregister: &pb.Message_Unregister{Ns: proto.String(ns)}})
}

// Close ends the session: it closes the stream for writing and waits, at
// most canvasCloseWait, for the point to close its side (or reset it), so
// that the point has read all that was written.
func (cs *CanvasSession) Close() error {
	cs.mu.Lock()
	if cs.held != nil && cs.c.keepTrailing {
		_ = WriteFrame(cs.s, cs.held)
	}
	cs.held = nil
	cs.mu.Unlock()
	err := cs.s.CloseWrite()
	_ = cs.s.SetReadDeadline(time.Now().Add(canvasCloseWait))
	<-cs.done
	_ = cs.s.Close()
	return err
}

func canvasFailed(err error) chan canvasReply {
	ch := make(chan canvasReply, 1)
	ch <- canvasReply{err: err}
	return ch
}

func waitCanvas(ctx context.Context, reply chan canvasReply) (*pb.Message, error) {
	select {
	case r := <-reply:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
