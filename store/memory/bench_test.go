package memory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// benchPerNamespace is how many registrations each namespace of a benchmark
// store holds: a store of n registrations has n/benchPerNamespace namespaces.
const benchPerNamespace = 1000

var benchSizes = []int{1_000, 100_000, 1_000_000}

var benchNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func benchReg(i int, record []byte) store.Registration {
	return store.Registration{
		Namespace: fmt.Sprintf("ns-%d", i/benchPerNamespace),
		Peer:      peer.ID(fmt.Sprintf("peer-%d", i%benchPerNamespace)),
		Record:    record,
		Expires:   benchNow.Add(time.Hour + time.Duration(i)*time.Millisecond),
	}
}

// filled returns a memory store holding n registrations.
func filled(b *testing.B, n int) *memory.Store {
	b.Helper()
	s := memory.New()
	record := make([]byte, 200)
	for i := range n {
		if _, err := s.Register(context.Background(), benchReg(i, record), store.Limits{}, benchNow); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkRegister refreshes random registrations of a store of each size,
// so that the size stays the same.
func BenchmarkRegister(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			s := filled(b, n)
			defer s.Close()
			record := make([]byte, 200)
			rng := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Register(context.Background(), benchReg(rng.IntN(n), record), store.Limits{MaxRegistrationsPerPeer: 1000}, benchNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDiscover100 reads a page of 100 registrations from a random
// position in a random namespace of a store of each size.
func BenchmarkDiscover100(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			s := filled(b, n)
			defer s.Close()
			// The sequence numbers of each namespace's first registration.
			firsts := map[string]uint64{}
			all, _ := s.Discover(context.Background(), "", 0, n, benchNow)
			for _, r := range all {
				if _, ok := firsts[r.Namespace]; !ok {
					firsts[r.Namespace] = r.Seq
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				ns := fmt.Sprintf("ns-%d", rng.IntN(n/benchPerNamespace))
				after := firsts[ns] + uint64(rng.IntN(benchPerNamespace-100))
				regs, err := s.Discover(context.Background(), ns, after, 100, benchNow)
				if err != nil || len(regs) != 100 {
					b.Fatalf("got %d registrations, %v", len(regs), err)
				}
			}
		})
	}
}
