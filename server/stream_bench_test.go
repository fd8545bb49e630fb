package server_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// BenchmarkDiscoverStreams is a DISCOVER answered with a page of 16
// registrations over a real connection (TCP on loopback, TLS, yamux), one
// stream a request as clients do, from 8 goroutines a core: with stream
// workers (the default) and without. Client and point share the process,
// so ns/op is the CPU of both.
//
//	go test -run '^$' -bench DiscoverStreams -count 6 ./server
func BenchmarkDiscoverStreams(b *testing.B) {
	st := memory.New()
	fillBench(b, st, 16)
	req, err := proto.Marshal(&pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{Ns: proto.String("bench"), Limit: proto.Uint64(100)}})
	if err != nil {
		b.Fatal(err)
	}
	for _, workers := range []int{0, server.DefaultStreamWorkers} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			h, client := testhost.New(b), testhost.New(b)
			rc := server.DefaultResources()
			rc.StreamWorkers = workers
			srv, err := server.New(h, st, server.WithResources(rc), server.WithAllowlist(server.Allowlist{Peers: []peer.ID{client.ID()}}))
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			if err := client.Connect(context.Background(), peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := discoverOnce(client, h.ID(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// discoverOnce sends req, a DISCOVER, on a new stream to the point, closes
// the stream for writing and reads the answer, which must be a page.
func discoverOnce(client host.Host, point peer.ID, req []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.NewStream(ctx, point, rendezvous.ProtocolID)
	if err != nil {
		return err
	}
	defer s.Close()
	w := msgio.NewVarintWriter(s)
	if err := w.WriteMsg(req); err != nil {
		return err
	}
	if err := s.CloseWrite(); err != nil {
		return err
	}
	ans, err := msgio.NewVarintReaderSize(s, 1<<20).ReadMsg()
	if err != nil {
		return err
	}
	var m pb.Message
	if err := proto.Unmarshal(ans, &m); err != nil {
		return err
	}
	if n := len(m.GetDiscoverResponse().GetRegistrations()); n != 16 {
		return fmt.Errorf("a page of %d registrations, want 16", n)
	}
	_, _ = io.Copy(io.Discard, s)
	return nil
}
