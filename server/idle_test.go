package server_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-msgio"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// bareProtocol answers one message and then waits for the next holding
// nothing: the least a stream that waits between requests can cost. It is
// the yardstick of the idle-stream benchmark.
const bareProtocol protocol.ID = "/rendezvous-test/bare/1.0.0"

// unlimitedHost is a loopback host whose resource manager lets one peer hold
// thousands of streams, so the benchmark measures their cost, not a limit.
func unlimitedHost(tb testing.TB) (host.Host, network.ResourceManager) {
	tb.Helper()
	mgr, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits))
	if err != nil {
		tb.Fatal(err)
	}
	return testhost.New(tb, libp2p.ResourceManager(mgr)), mgr
}

func mountBare(h host.Host) {
	h.SetStreamHandler(bareProtocol, func(s network.Stream) {
		rd := msgio.NewVarintReaderSize(s, 1<<10)
		wr := msgio.NewVarintWriter(s)
		for {
			msg, err := rd.ReadMsg()
			if err != nil {
				_ = s.Reset()
				return
			}
			err = wr.WriteMsg(msg)
			rd.ReleaseMsg(msg)
			if err != nil {
				_ = s.Reset()
				return
			}
		}
	})
}

// idleStreams opens n streams of protocol id from clients to the point, has
// each make one DISCOVER round trip, and leaves them open and quiet. It
// returns the streams.
func idleStreams(b testing.TB, clients []host.Host, point host.Host, id protocol.ID, n int) []network.Stream {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req := &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{Ns: proto.String("idle"), Limit: proto.Uint64(10)}}
	streams := make([]network.Stream, 0, n)
	for i := range n {
		s, err := clients[i%len(clients)].NewStream(ctx, point.ID(), id)
		if err != nil {
			b.Fatalf("stream %d: %v", i, err)
		}
		if err := pbio.NewDelimitedWriter(s).WriteMsg(req); err != nil {
			b.Fatalf("stream %d: %v", i, err)
		}
		var resp pb.Message
		if err := pbio.NewDelimitedReader(s, 1<<16).ReadMsg(&resp); err != nil {
			b.Fatalf("stream %d: %v", i, err)
		}
		streams = append(streams, s)
	}
	return streams
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// BenchmarkIdleStreams measures what streams that wait between requests
// (as a client polling on one stream does) cost the process: heap and
// stacks per stream, goroutines per stream, and the memory reserved for
// them in the point's resource-manager service scope. Both ends of every
// stream are in this process: compare the rendezvous figures with the bare
// protocol's, which holds nothing while it waits.
//
//	go test -run '^$' -bench IdleStreams -benchtime 1x ./server
func BenchmarkIdleStreams(b *testing.B) {
	streams := 10_000
	if testing.Short() {
		streams = 500 // CI runs the benchmarks once, for correctness
	}
	const clients = 10
	for _, id := range []protocol.ID{rendezvous.ProtocolID, bareProtocol} {
		b.Run(fmt.Sprintf("protocol=%s/streams=%d", id, streams), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				point, mgr := unlimitedHost(b)
				rc := server.DefaultResources()
				srv, err := server.New(point, memory.New(), server.WithResources(rc))
				if err != nil {
					b.Fatal(err)
				}
				mountBare(point)
				var cs []host.Host
				for range clients {
					c, _ := unlimitedHost(b)
					if err := c.Connect(context.Background(), *host.InfoFromHost(point)); err != nil {
						b.Fatal(err)
					}
					cs = append(cs, c)
				}
				before, goroutines := heapInUse(), runtime.NumGoroutine()
				b.StartTimer()
				open := idleStreams(b, cs, point, id, streams)
				b.StopTimer()
				after, goroutinesAfter := heapInUse(), runtime.NumGoroutine()
				var reserved int64
				_ = mgr.ViewService(rendezvous.ServiceName, func(s network.ServiceScope) error {
					reserved = s.Stat().Memory
					return nil
				})
				b.ReportMetric(float64(after-before)/float64(streams), "heap-B/stream")
				b.ReportMetric(float64(goroutinesAfter-goroutines)/float64(streams), "goroutines/stream")
				b.ReportMetric(float64(reserved)/float64(streams), "reserved-B/stream")
				for _, s := range open {
					_ = s.Reset()
				}
				_ = srv.Close()
				for _, c := range cs {
					_ = c.Close()
				}
				_ = point.Close()
				b.StartTimer()
			}
		})
	}
}

// A stream that waits for its next request holds no reservation in the
// point's service scope: its request buffer is reserved only while a
// request is read.
func TestWaitingStreamHoldsNoRequestBuffer(t *testing.T) {
	point, mgr := unlimitedHost(t)
	srv, err := server.New(point, memory.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	c := testhost.New(t)
	if err := c.Connect(context.Background(), *host.InfoFromHost(point)); err != nil {
		t.Fatal(err)
	}
	open := idleStreams(t, []host.Host{c}, point, rendezvous.ProtocolID, 3)
	var reserved int64
	var streams int
	_ = mgr.ViewService(rendezvous.ServiceName, func(s network.ServiceScope) error {
		reserved, streams = s.Stat().Memory, s.Stat().NumStreamsInbound
		return nil
	})
	if streams != len(open) || reserved != 0 {
		t.Fatalf("service scope: %d inbound streams holding %d bytes, want %d holding 0", streams, reserved, len(open))
	}
}

// A request that trickles in is cut off by the request timeout, counted
// from its length prefix, however long the idle timeout is.
func TestTricklingRequestIsCutOff(t *testing.T) {
	rc := server.DefaultResources()
	rc.IdleTimeout, rc.RequestTimeout = time.Hour, 300*time.Millisecond
	p := newPoint(t, server.WithResources(rc))
	s := newPeer(t, p).open()
	start := time.Now()
	if _, err := s.s.Write([]byte{100, 0x08, 0x03}); err != nil { // a 100-byte request, 2 bytes of it
		t.Fatal(err)
	}
	_ = s.s.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := s.s.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a trickling request: %v, want the point to reset the stream", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the point cut the stream off after %v, want about the request timeout", d)
	}
}
