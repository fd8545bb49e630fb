package client_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-msgio"
	"github.com/libp2p/go-msgio/pbio"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// shortTTLs is a client TTL policy that allows the short TTLs of tests.
var shortTTLs = rendezvous.TTLPolicy{Min: time.Second, Max: 72 * time.Hour, Default: time.Hour}

// checkLeaks fails t if a goroutine started during the test outlives it and
// its cleanups. Call it first, so that its cleanup runs last.
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// newHost returns a TCP host on loopback, closed at the end of the test.
func newHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableRelay(),
		libp2p.ResourceManager(&network.NullResourceManager{}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func info(h host.Host) peer.AddrInfo {
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

// newPoint returns a rendezvous point of this module accepting TTLs from 1s.
func newPoint(t testing.TB) host.Host {
	t.Helper()
	h := newHost(t)
	st := memory.New()
	rc := server.DefaultResources()
	rc.MinTTL = time.Second
	s, err := server.New(h, st, server.WithResources(rc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(); _ = st.Close() })
	return h
}

// newResetPoint returns a host that resets every rendezvous stream.
func newResetPoint(t testing.TB) host.Host {
	t.Helper()
	h := newHost(t)
	h.SetStreamHandler(rendezvous.ProtocolID, func(s network.Stream) { _ = s.Reset() })
	return h
}

// deadPoint returns the identity and address of a host that is gone.
func deadPoint(t testing.TB) peer.AddrInfo {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableRelay(),
	)
	if err != nil {
		t.Fatal(err)
	}
	ai := info(h)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	return ai
}

// newClient returns a client on a new host, closed at the end of the test.
func newClient(t testing.TB, opts ...client.Option) (*client.Client, host.Host) {
	t.Helper()
	h := newHost(t)
	opts = append([]client.Option{client.WithTTLPolicy(shortTTLs), client.WithRequestTimeout(10 * time.Second)}, opts...)
	c, err := client.New(h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, h
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// scriptedPoint is a host that answers each DISCOVER (or REGISTER) with
// what answer returns for the n-th request (from 0), counting requests and
// recording their sizes.
type scriptedPoint struct {
	host.Host
	mu     sync.Mutex
	n      int
	sizes  []int
	answer func(n int, req *pb.Message) *pb.Message
	last   *pb.Message
}

func newScriptedPoint(t testing.TB, answer func(n int, req *pb.Message) *pb.Message) *scriptedPoint {
	t.Helper()
	sp := &scriptedPoint{Host: newHost(t), answer: answer}
	sp.SetStreamHandler(rendezvous.ProtocolID, func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(10 * time.Second))
		frame, err := msgio.NewVarintReaderSize(s, 1<<20).ReadMsg()
		var req pb.Message
		if err == nil {
			err = proto.Unmarshal(frame, &req)
		}
		if err != nil {
			_ = s.Reset()
			return
		}
		sp.mu.Lock()
		n := sp.n
		sp.n++
		sp.sizes = append(sp.sizes, len(frame)+protowire.SizeVarint(uint64(len(frame))))
		sp.last = &req
		sp.mu.Unlock()
		if resp := sp.answer(n, &req); resp != nil {
			_ = pbio.NewDelimitedWriter(s).WriteMsg(resp)
		}
	})
	t.Cleanup(func() { sp.RemoveStreamHandler(rendezvous.ProtocolID) })
	return sp
}

func (sp *scriptedPoint) requests() int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.n
}

func (sp *scriptedPoint) maxSize() int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return slices.Max(append([]int{0}, sp.sizes...))
}

func (sp *scriptedPoint) lastRecord() []byte {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.last.GetRegister().GetSignedPeerRecord()
}
