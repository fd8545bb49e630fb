package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/x/rate"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// point is a rendezvous point on a loopback host with a fake clock.
type point struct {
	host   host.Host
	server *server.Server
	store  store.Store
	clock  *fakeClock
}

func newPoint(t testing.TB, opts ...server.Option) *point {
	t.Helper()
	p := &point{host: testhost.New(t), store: memory.New(), clock: newFakeClock()}
	opts = append([]server.Option{server.WithClock(p.clock.Now)}, opts...)
	s, err := server.New(p.host, p.store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p.server = s
	t.Cleanup(func() {
		_ = s.Close()
		_ = p.store.Close()
	})
	return p
}

// peerConn is a peer speaking raw protocol messages to a point.
type peerConn struct {
	t     testing.TB
	host  host.Host
	point peer.ID
	proto protocol.ID
}

func newPeer(t testing.TB, p *point) *peerConn {
	t.Helper()
	h := testhost.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: p.host.ID(), Addrs: p.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return &peerConn{t: t, host: h, point: p.host.ID(), proto: rendezvous.ProtocolID}
}

// stream is one stream of a peerConn, with helpers to write and read
// messages under a deadline.
type stream struct {
	t  testing.TB
	s  network.Stream
	rd pbio.ReadCloser
	wr pbio.WriteCloser
}

func (c *peerConn) open() *stream {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.host.NewStream(ctx, c.point, c.proto)
	if err != nil {
		c.t.Fatal(err)
	}
	_ = s.SetDeadline(time.Now().Add(20 * time.Second))
	c.t.Cleanup(func() { _ = s.Reset() })
	return &stream{t: c.t, s: s, rd: pbio.NewDelimitedReader(s, 1<<20), wr: pbio.NewDelimitedWriter(s)}
}

func (s *stream) send(m *pb.Message) {
	s.t.Helper()
	if err := s.wr.WriteMsg(m); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stream) recv() *pb.Message {
	s.t.Helper()
	var m pb.Message
	if err := s.rd.ReadMsg(&m); err != nil {
		s.t.Fatalf("reading response: %v", err)
	}
	return &m
}

// roundTrip sends m on a new stream and returns the response.
func (c *peerConn) roundTrip(m *pb.Message) *pb.Message {
	c.t.Helper()
	s := c.open()
	s.send(m)
	return s.recv()
}

// record returns the peer's signed record with its listen addresses.
func (c *peerConn) record() []byte {
	c.t.Helper()
	rec, err := rendezvous.SealPeerRecord(c.host.Peerstore().PrivKey(c.host.ID()), c.host.Addrs(), peer.TimestampSeq())
	if err != nil {
		c.t.Fatal(err)
	}
	return rec
}

func registerMsg(ns string, rec []byte, ttl *uint64) *pb.Message {
	return &pb.Message{
		Type:     pb.Message_REGISTER.Enum(),
		Register: &pb.Message_Register{Ns: proto.String(ns), SignedPeerRecord: rec, Ttl: ttl},
	}
}

func discoverMsg(ns string, limit uint64, cookie []byte) *pb.Message {
	return &pb.Message{
		Type:     pb.Message_DISCOVER.Enum(),
		Discover: &pb.Message_Discover{Ns: proto.String(ns), Limit: proto.Uint64(limit), Cookie: cookie},
	}
}

func unregisterMsg(ns string) *pb.Message {
	return &pb.Message{Type: pb.Message_UNREGISTER.Enum(), Unregister: &pb.Message_Unregister{Ns: proto.String(ns)}}
}

// register registers the peer in ns with ttl seconds and returns the response.
func (c *peerConn) register(ns string, ttl uint64) *pb.Message_RegisterResponse {
	c.t.Helper()
	return c.roundTrip(registerMsg(ns, c.record(), proto.Uint64(ttl))).GetRegisterResponse()
}

func (c *peerConn) mustRegister(ns string, ttl uint64) {
	c.t.Helper()
	if r := c.register(ns, ttl); r.GetStatus() != pb.Message_OK {
		c.t.Fatalf("register in %q: %v %q", ns, r.GetStatus(), r.GetStatusText())
	}
}

func (c *peerConn) discover(ns string, limit uint64, cookie []byte) *pb.Message_DiscoverResponse {
	c.t.Helper()
	m := c.roundTrip(discoverMsg(ns, limit, cookie))
	if m.GetType() != pb.Message_DISCOVER_RESPONSE || m.Type == nil {
		c.t.Fatalf("answer to DISCOVER has type %v", m.Type)
	}
	return m.GetDiscoverResponse()
}

// peersOf returns the peer IDs of a DISCOVER response, in order, checking
// each record's signature.
func peersOf(t testing.TB, r *pb.Message_DiscoverResponse) []peer.ID {
	t.Helper()
	var out []peer.ID
	for _, reg := range r.GetRegistrations() {
		rec, _, err := rendezvous.OpenSignedPeerRecord(reg.GetSignedPeerRecord())
		if err != nil {
			t.Fatalf("registration with a bad record: %v", err)
		}
		out = append(out, rec.PeerID)
	}
	return out
}

func loopback(t testing.TB) []ma.Multiaddr {
	return []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}
}

type storeRegistration = store.Registration

// unlimited is rc with the per-source rates and quotas out of the way, for
// tests of other limits whose peers all connect from 127.0.0.1.
func unlimited(rc server.Resources) server.Resources {
	fast := rate.Limit{RPS: 1e9, Burst: 1 << 30}
	rc.RegisterRate, rc.RegisterNetRate, rc.DiscoverRate, rc.DiscoverNetRate = fast, fast, fast, fast
	rc.MaxRegistrationsPerIPv4, rc.MaxRegistrationsPerIPv4Net = 1<<30, 1<<30
	rc.MaxRegistrationsPerIPv6Subnet, rc.MaxRegistrationsPerIPv6Net = 1<<30, 1<<30
	return rc
}

// ratePer is a rate of rps a second with burst.
func ratePer(rps float64, burst int) rate.Limit { return rate.Limit{RPS: rps, Burst: burst} }
