package postgres_test

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/postgres"
)

// BenchmarkRegisterConcurrent registers new peers from many goroutines at
// once, into one point or into two points (two stores, two pools) sharing
// one database, each with the same number of writers. Sources are spread
// over 256 IPv4 networks, under per-peer and per-source limits that are
// never reached, so every limit is counted. It reports REGISTERs a second
// over all points. rtt=0 is the database on this machine; rtt=1ms puts it
// a millisecond away (latencyConn), as points on other machines than their
// database are.
func BenchmarkRegisterConcurrent(b *testing.B) {
	for _, rtt := range []time.Duration{0, time.Millisecond} {
		for _, points := range []int{1, 2} {
			for _, writers := range []int{16, 64} {
				name := fmt.Sprintf("rtt=%v/points=%d/writers=%d", rtt, points, writers)
				b.Run(name, func(b *testing.B) { registerConcurrent(b, rtt, points, writers) })
			}
		}
	}
}

// registerConcurrent runs BenchmarkRegisterConcurrent's case of points
// points, writers writers each, rtt from the database.
func registerConcurrent(b *testing.B, rtt time.Duration, points, writers int) {
	ctx := context.Background()
	record := make([]byte, 200)
	lim := store.Limits{
		MaxRegistrationsPerPeer: 1000, MaxRegistrations: 10_000_000,
		MaxPerIPv4Address: 1_000_000, MaxPerIPv4Net: 1_000_000,
	}
	dsn, schema := newSchema(b)
	var stores []*postgres.Store
	for range points {
		stores = append(stores, open(b, dsn, schema, postgres.WithSweepInterval(0), inSchemaRTT(schema, rtt)))
	}
	var next atomic.Int64
	b.SetParallelism(max(points*writers/runtime.GOMAXPROCS(0), 1))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		s := stores[int(next.Add(1))%points]
		for i := 0; pb.Next(); i++ {
			src := netip.AddrFrom4([4]byte{10, byte(mrand.N(256)), byte(mrand.N(256)), byte(mrand.N(256))})
			r := store.Registration{
				Namespace: benchNS(i % 10), Peer: peer.ID(fmt.Sprintf("new-%d", mrand.Int64())),
				Record: record, Expires: epoch.Add(time.Hour), Source: src,
			}
			if _, err := s.Register(ctx, r, lim, epoch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reg/s")
}
