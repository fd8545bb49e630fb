package scripted

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// Limits and timings of the Go fork of go-libp2p-rendezvous that go-waku
// runs.
const (
	// WakuDefaultTTL is granted to a REGISTER without a TTL (or with 0).
	WakuDefaultTTL = 2 * time.Hour
	// WakuMaxTTL is the longest TTL granted; there is no minimum but 1 s.
	WakuMaxTTL = 72 * time.Hour
	// WakuMaxRegistrations is the default per-peer cap: a peer holding
	// more registrations than this (expired ones not yet swept included)
	// is refused any REGISTER, refreshes too.
	WakuMaxRegistrations = 1000
	// WakuCookieLen is the length of its cookies: an 8-byte counter and
	// the SHA-256 of a nonce, the namespace and the counter.
	WakuCookieLen = 8 + sha256.Size
	// WakuPollInterval is the pause of its client's long-polling
	// DiscoverAsync between two DISCOVERs on the same stream.
	WakuPollInterval = 2 * time.Minute
	// WakuMinTTL is the shortest TTL its refreshing client registers with.
	WakuMinTTL = 120 * time.Second
	// WakuRefreshLead is how long before the TTL asked runs out its
	// refreshing client registers again.
	WakuRefreshLead = 30 * time.Second
)

const (
	wakuMaxNamespaceLength = 256     // one more than the specification's
	wakuMaxAddrBytes       = 2048    // the binary addresses of a record
	wakuMaxDiscoverLimit   = 1000    // also the limit of a DISCOVER without one
	wakuMaxMessageSize     = 4 << 20 // go-libp2p's network.MessageSizeMax
	wakuSweepInterval      = 15 * time.Minute
	wakuPollBatch          = 200 // the limit of each DiscoverAsync DISCOVER
	wakuRetryWait          = 5 * time.Minute
)

// WakuExchange is one request a WakuPoint carried out: the request as
// decoded and the answer it wrote (nil for UNREGISTER).
type WakuExchange struct {
	Peer     peer.ID
	At       time.Time
	Request  *pb.Message
	Response *pb.Message
}

// WakuPoint is a rendezvous point with the habits of the Go fork of
// go-libp2p-rendezvous that go-waku runs. It reads requests on a stream
// until EOF or any read error, answering each in order (UNREGISTER gets
// nothing), and resets the stream when it stops: a client that half-closes
// before reading its answer loses it. It decodes as proto2 (a message
// without `type` is a REGISTER), takes the standard envelope only, grants
// 1 s to 72 h (2 h when absent), keeps expiries in whole Unix seconds,
// writes 40-byte cookies, answers OK without `statusText` and errors
// without `ttl`, and writes every returned registration with the `ns` of
// the last one of its response (empty but present when a namespace was
// asked).
type WakuPoint struct {
	host    host.Host
	nonce   []byte
	peerCap int
	observe func(WakuExchange)
	book    Book

	mu        sync.Mutex
	lastSweep time.Time
}

// WakuPointOption configures a WakuPoint.
type WakuPointOption func(*WakuPoint)

// WithWakuPeerCap sets the per-peer cap, WakuMaxRegistrations by default.
func WithWakuPeerCap(n int) WakuPointOption {
	return func(p *WakuPoint) { p.peerCap = n }
}

// WithWakuObserver has f called with every request the point carries out,
// before its answer is written.
func WithWakuObserver(f func(WakuExchange)) WakuPointOption {
	return func(p *WakuPoint) { p.observe = f }
}

// NewWakuPoint mounts a Waku-style point on h for rendezvous.ProtocolID.
func NewWakuPoint(h host.Host, opts ...WakuPointOption) *WakuPoint {
	p := &WakuPoint{host: h, nonce: make([]byte, 32), peerCap: WakuMaxRegistrations, lastSweep: time.Now()}
	_, _ = rand.Read(p.nonce)
	for _, opt := range opts {
		opt(p)
	}
	h.SetStreamHandler(rendezvous.ProtocolID, p.handle)
	return p
}

// Close unmounts the point.
func (p *WakuPoint) Close() {
	p.host.RemoveStreamHandler(rendezvous.ProtocolID)
}

// Book returns the registrations the point holds.
func (p *WakuPoint) Book() *Book { return &p.book }

func (p *WakuPoint) handle(s network.Stream) {
	defer func() { _ = s.Reset() }() // whatever ended the loop, EOF included
	remote := s.Conn().RemotePeer()
	r := bufio.NewReader(s)
	for {
		frame, err := ReadFrame(r, wakuMaxMessageSize)
		if err != nil {
			return
		}
		req, err := Decode(frame)
		if err != nil {
			return
		}
		var resp *pb.Message
		switch req.GetType() { // proto2: an absent type reads as REGISTER
		case pb.Message_REGISTER:
			resp = &pb.Message{Type: pb.Message_REGISTER_RESPONSE.Enum(), RegisterResponse: p.register(remote, req.GetRegister())}
		case pb.Message_UNREGISTER:
			p.unregister(remote, req.GetUnregister())
		case pb.Message_DISCOVER:
			resp = &pb.Message{Type: pb.Message_DISCOVER_RESPONSE.Enum(), DiscoverResponse: p.discover(req.GetDiscover())}
		default:
			return
		}
		if p.observe != nil {
			p.observe(WakuExchange{Peer: remote, At: time.Now(), Request: req, Response: resp})
		}
		if resp != nil {
			if err := WriteFrame(s, resp); err != nil {
				return
			}
		}
	}
}

func wakuRegisterError(status pb.Message_ResponseStatus, text string) *pb.Message_RegisterResponse {
	return &pb.Message_RegisterResponse{Status: status.Enum(), StatusText: proto.String(text)}
}

func (p *WakuPoint) register(remote peer.ID, m *pb.Message_Register) *pb.Message_RegisterResponse {
	ns := m.GetNs()
	switch {
	case ns == "":
		return wakuRegisterError(pb.Message_E_INVALID_NAMESPACE, "unspecified namespace")
	case len(ns) > wakuMaxNamespaceLength:
		return wakuRegisterError(pb.Message_E_INVALID_NAMESPACE, "namespace too long")
	case m.SignedPeerRecord == nil:
		return wakuRegisterError(pb.Message_E_INVALID_SIGNED_PEER_RECORD, "missing signed peer record")
	}
	rec, env, err := OpenRecord(m.SignedPeerRecord)
	if err != nil || env != Standard {
		return wakuRegisterError(pb.Message_E_INVALID_SIGNED_PEER_RECORD, "invalid peer record")
	}
	if rec.PeerID != remote {
		return wakuRegisterError(pb.Message_E_INVALID_SIGNED_PEER_RECORD, "peer id mismatch")
	}
	if len(rec.Addrs) == 0 {
		return wakuRegisterError(pb.Message_E_INVALID_SIGNED_PEER_RECORD, "missing peer addresses")
	}
	size := 0
	for _, a := range rec.Addrs {
		size += len(a.Bytes())
	}
	if size > wakuMaxAddrBytes {
		return wakuRegisterError(pb.Message_E_INVALID_SIGNED_PEER_RECORD, "peer info too long")
	}
	if m.GetTtl() > uint64(WakuMaxTTL/time.Second) {
		return wakuRegisterError(pb.Message_E_INVALID_TTL, "bad ttl")
	}
	ttl := WakuDefaultTTL
	if m.GetTtl() > 0 {
		ttl = time.Duration(m.GetTtl()) * time.Second
	}
	now := p.sweep()
	// Its table counts expired rows too, until they are swept.
	if p.book.Count(time.Time{}, func(e Entry) bool { return e.Peer == remote }) > p.peerCap {
		return wakuRegisterError(pb.Message_E_NOT_AUTHORIZED, "too many registrations")
	}
	// Expiry is kept in whole Unix seconds.
	p.book.Put(ns, remote, m.SignedPeerRecord, ttl, now.Truncate(time.Second))
	return &pb.Message_RegisterResponse{Status: pb.Message_OK.Enum(), Ttl: proto.Uint64(uint64(ttl / time.Second))}
}

// sweep drops the expired registrations when a sweep is due, as the real
// point's background task does every 15 minutes, and returns the time.
func (p *WakuPoint) sweep() time.Time {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.lastSweep) >= wakuSweepInterval {
		p.lastSweep = now
		p.book.Remove(func(e Entry) bool { return !now.Before(e.Expires) })
	}
	return now
}

func (p *WakuPoint) unregister(remote peer.ID, m *pb.Message_Unregister) {
	ns := m.GetNs() // none: every namespace
	p.book.Remove(func(e Entry) bool { return e.Peer == remote && (ns == "" || e.NS == ns) })
}

func wakuDiscoverError(status pb.Message_ResponseStatus, text string) *pb.Message_DiscoverResponse {
	return &pb.Message_DiscoverResponse{Status: status.Enum(), StatusText: proto.String(text)}
}

func (p *WakuPoint) discover(m *pb.Message_Discover) *pb.Message_DiscoverResponse {
	ns := m.GetNs()
	if len(ns) > wakuMaxNamespaceLength {
		return wakuDiscoverError(pb.Message_E_INVALID_NAMESPACE, "namespace too long")
	}
	limit := wakuMaxDiscoverLimit
	if l := m.GetLimit(); l > 0 && l < wakuMaxDiscoverLimit {
		limit = int(l)
	}
	cookie := m.Cookie // proto2: present and empty is not nil
	if cookie != nil && !p.validCookie(cookie, ns) {
		return wakuDiscoverError(pb.Message_E_INVALID_COOKIE, "bad cookie")
	}
	var counter uint64
	if cookie != nil {
		counter = binary.BigEndian.Uint64(cookie)
	}
	now := p.sweep()
	found := p.book.Live(now, func(e Entry) bool { return e.Seq > counter && (ns == "" || e.NS == ns) })
	found = found[:min(len(found), limit)]
	// Registrations carry their namespace only when every namespace is
	// asked; and each takes the address of the same loop variable, so all
	// of a response carry the value it held last.
	var lastNS string
	if len(found) > 0 {
		counter = found[len(found)-1].Seq
		if ns == "" {
			lastNS = found[len(found)-1].NS
		}
	}
	regs := make([]*pb.Message_Register, len(found))
	for i, e := range found {
		regs[i] = &pb.Message_Register{
			Ns:               &lastNS,
			SignedPeerRecord: e.Record,
			Ttl:              proto.Uint64(uint64(e.Expires.Unix() - now.Unix())),
		}
	}
	if counter > 0 {
		cookie = p.cookie(counter, ns)
	}
	return &pb.Message_DiscoverResponse{Status: pb.Message_OK.Enum(), Registrations: regs, Cookie: cookie}
}

// cookie is the counter followed by SHA-256(nonce, namespace, counter).
func (p *WakuPoint) cookie(counter uint64, ns string) []byte {
	c := binary.BigEndian.AppendUint64(nil, counter)
	h := sha256.New()
	h.Write(p.nonce)
	h.Write([]byte(ns))
	h.Write(c)
	return h.Sum(c)
}

func (p *WakuPoint) validCookie(c []byte, ns string) bool {
	return len(c) == WakuCookieLen && bytes.Equal(c, p.cookie(binary.BigEndian.Uint64(c), ns))
}

// WakuRegistration is a registration as the Waku client reads it.
type WakuRegistration struct {
	Peer peer.AddrInfo
	NS   string // as written by the point
	TTL  int    // seconds
}

// WakuClient is a rendezvous client with the habits of go-waku's (the Go
// fork of go-libp2p-rendezvous): one stream per REGISTER and DISCOVER,
// reset once the answer is read; an UNREGISTER written on a stream of its
// own, closed at once; records in the standard envelope with the Unix time
// in seconds as sequence number; a refreshing Register; and a long-polling
// DiscoverAsync that keeps one stream and asks again every poll interval.
type WakuClient struct {
	host        host.Host
	point       peer.ID
	minTTL      time.Duration
	refreshLead time.Duration
	interval    time.Duration
	onRefresh   func(ns string, granted time.Duration, err error)
}

// WakuClientOption configures a WakuClient.
type WakuClientOption func(*WakuClient)

// WithWakuRefresh sets the shortest TTL Register takes (WakuMinTTL) and
// how long before it runs out it registers again (WakuRefreshLead).
func WithWakuRefresh(minTTL, lead time.Duration) WakuClientOption {
	return func(c *WakuClient) { c.minTTL, c.refreshLead = minTTL, lead }
}

// WithWakuPollInterval sets the pause of DiscoverAsync, WakuPollInterval by
// default.
func WithWakuPollInterval(d time.Duration) WakuClientOption {
	return func(c *WakuClient) { c.interval = d }
}

// WithWakuOnRefresh has f called after every refresh of Register.
func WithWakuOnRefresh(f func(ns string, granted time.Duration, err error)) WakuClientOption {
	return func(c *WakuClient) { c.onRefresh = f }
}

// NewWakuClient returns a Waku-style client of h for the point, whose
// addresses h must know.
func NewWakuClient(h host.Host, point peer.ID, opts ...WakuClientOption) *WakuClient {
	c := &WakuClient{host: h, point: point, minTTL: WakuMinTTL, refreshLead: WakuRefreshLead, interval: WakuPollInterval}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// RegisterOnce sends one REGISTER for ttl (0 for none) and returns the TTL
// granted.
func (c *WakuClient) RegisterOnce(ctx context.Context, ns string, ttl time.Duration) (time.Duration, error) {
	s, err := c.host.NewStream(ctx, c.point, rendezvous.ProtocolID)
	if err != nil {
		return 0, err
	}
	defer func() { _ = s.Reset() }()
	wakuDeadline(ctx, s)
	key := c.host.Peerstore().PrivKey(c.host.ID())
	if key == nil {
		return 0, errors.New("waku client: host has no private key")
	}
	addrs := c.host.Addrs()
	if len(addrs) == 0 {
		return 0, fmt.Errorf("waku client: no addrs available to advertise: %s", ns)
	}
	rec, err := rendezvous.SealPeerRecord(key, addrs, uint64(time.Now().Unix()))
	if err != nil {
		return 0, err
	}
	reg := &pb.Message_Register{SignedPeerRecord: rec}
	if ns != "" {
		reg.Ns = proto.String(ns)
	}
	if ttl > 0 {
		reg.Ttl = proto.Uint64(uint64(ttl / time.Second))
	}
	resp, err := wakuAsk(bufio.NewReader(s), s, &pb.Message{Type: pb.Message_REGISTER.Enum(), Register: reg})
	if err != nil {
		return 0, err
	}
	if resp.GetType() != pb.Message_REGISTER_RESPONSE {
		return 0, fmt.Errorf("waku client: unexpected response %s", resp.GetType())
	}
	r := resp.GetRegisterResponse()
	if r.GetStatus() != pb.Message_OK {
		return 0, &rendezvous.Error{Status: r.GetStatus(), Text: r.GetStatusText()}
	}
	return time.Duration(r.GetTtl()) * time.Second, nil
}

// Register registers once, refusing a TTL under the client's minimum, then
// registers again with the same TTL every TTL less the refresh lead until
// ctx ends; an UNREGISTER does not stop it. A failed refresh is retried
// after 5 minutes (the real client adds a random part).
func (c *WakuClient) Register(ctx context.Context, ns string, ttl time.Duration) (time.Duration, error) {
	if ttl < c.minTTL {
		return 0, errors.New("waku client: registration TTL is too short")
	}
	granted, err := c.RegisterOnce(ctx, ns, ttl)
	if err != nil {
		return 0, err
	}
	go c.refresh(ctx, ns, ttl)
	return granted, nil
}

func (c *WakuClient) refresh(ctx context.Context, ns string, ttl time.Duration) {
	wait := ttl - c.refreshLead
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		granted, err := c.RegisterOnce(ctx, ns, ttl)
		wait = ttl - c.refreshLead
		if err != nil {
			wait = wakuRetryWait
		}
		if c.onRefresh != nil && ctx.Err() == nil {
			c.onRefresh(ns, granted, err)
		}
	}
}

// Unregister writes an UNREGISTER (without `ns` when ns is empty: every
// namespace, at a Waku point) and closes the stream without waiting.
func (c *WakuClient) Unregister(ctx context.Context, ns string) error {
	s, err := c.host.NewStream(ctx, c.point, rendezvous.ProtocolID)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	u := &pb.Message_Unregister{}
	if ns != "" {
		u.Ns = proto.String(ns)
	}
	return WriteFrame(s, &pb.Message{Type: pb.Message_UNREGISTER.Enum(), Unregister: u})
}

// Discover sends one DISCOVER on a stream of its own: `ns` left out when
// empty, `limit` when 0 and `cookie` when nil.
func (c *WakuClient) Discover(ctx context.Context, ns string, limit int, cookie []byte) ([]WakuRegistration, []byte, error) {
	s, err := c.host.NewStream(ctx, c.point, rendezvous.ProtocolID)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = s.Reset() }()
	wakuDeadline(ctx, s)
	return wakuDiscover(bufio.NewReader(s), s, ns, limit, cookie)
}

func wakuDiscover(r *bufio.Reader, s network.Stream, ns string, limit int, cookie []byte) ([]WakuRegistration, []byte, error) {
	d := &pb.Message_Discover{Cookie: cookie}
	if ns != "" {
		d.Ns = proto.String(ns)
	}
	if limit > 0 {
		d.Limit = proto.Uint64(uint64(limit))
	}
	resp, err := wakuAsk(r, s, &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: d})
	if err != nil {
		return nil, nil, err
	}
	if resp.GetType() != pb.Message_DISCOVER_RESPONSE {
		return nil, nil, fmt.Errorf("waku client: unexpected response %s", resp.GetType())
	}
	dr := resp.GetDiscoverResponse()
	if dr.GetStatus() != pb.Message_OK {
		return nil, nil, &rendezvous.Error{Status: dr.GetStatus(), Text: dr.GetStatusText()}
	}
	var regs []WakuRegistration
	for _, reg := range dr.GetRegistrations() {
		rec, env, err := OpenRecord(reg.GetSignedPeerRecord())
		if err != nil || env != Standard {
			continue // logged and skipped
		}
		regs = append(regs, WakuRegistration{Peer: peer.AddrInfo{ID: rec.PeerID, Addrs: rec.Addrs}, NS: reg.GetNs(), TTL: int(reg.GetTtl())})
	}
	return regs, dr.GetCookie(), nil
}

// WakuAnswer is one answer to the long-polling DISCOVER.
type WakuAnswer struct {
	Stream        string // the ID of the stream it came on
	Registrations []WakuRegistration
	Cookie        []byte
}

// WakuPoll is a running DiscoverAsync. The real client hands out the
// registrations one by one; this one hands out whole answers, so that a
// test sees which stream and which poll each came with.
type WakuPoll struct {
	answers chan WakuAnswer
	err     error // set before answers is closed
}

// Answers returns the answers in order; it is closed when the poll stops.
func (p *WakuPoll) Answers() <-chan WakuAnswer { return p.answers }

// Err is why the poll stopped; read it once Answers is closed.
func (p *WakuPoll) Err() error { return p.err }

// DiscoverAsync opens one stream and sends on it a DISCOVER for ns with a
// limit of 200 and the last cookie received, at once again after a full
// answer and after the poll interval otherwise, until ctx ends or a
// request fails. It then resets the stream.
func (c *WakuClient) DiscoverAsync(ctx context.Context, ns string) (*WakuPoll, error) {
	s, err := c.host.NewStream(ctx, c.point, rendezvous.ProtocolID)
	if err != nil {
		return nil, err
	}
	p := &WakuPoll{answers: make(chan WakuAnswer)}
	go func() {
		defer close(p.answers)
		defer func() { _ = s.Reset() }()
		r := bufio.NewReader(s)
		var cookie []byte
		for {
			regs, next, err := wakuDiscover(r, s, ns, wakuPollBatch, cookie)
			if err != nil {
				p.err = err
				return
			}
			cookie = next // none: the next DISCOVER starts over
			select {
			case p.answers <- WakuAnswer{Stream: s.ID(), Registrations: regs, Cookie: next}:
			case <-ctx.Done():
				p.err = ctx.Err()
				return
			}
			if len(regs) < wakuPollBatch {
				t := time.NewTimer(c.interval)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					p.err = ctx.Err()
					return
				}
			}
		}
	}()
	return p, nil
}

// wakuAsk writes req and reads one answer, as go-msgio's pbio does.
func wakuAsk(r *bufio.Reader, w network.Stream, req *pb.Message) (*pb.Message, error) {
	if err := WriteFrame(w, req); err != nil {
		return nil, err
	}
	frame, err := ReadFrame(r, wakuMaxMessageSize)
	if err != nil {
		return nil, err
	}
	return Decode(frame)
}

func wakuDeadline(ctx context.Context, s network.Stream) {
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
}
