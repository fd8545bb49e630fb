package memory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
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
	// Collect the garbage of filling now, so that no collection started by
	// it runs during the timed loop.
	runtime.GC()
	return s
}

// BenchmarkRegister refreshes the oldest registration of a store of each
// size, as clients' refresh timers do (each refreshes at a fixed fraction of
// its TTL, so the oldest registration is the next refreshed); the size stays
// the same.
func BenchmarkRegister(b *testing.B) {
	benchmarkRegister(b, func(i, n int, _ *rand.Rand) int { return i % n })
}

// BenchmarkRegisterRandom refreshes registrations in random order: every
// index is touched at a random place, the worst case for the memory
// hierarchy.
func BenchmarkRegisterRandom(b *testing.B) {
	benchmarkRegister(b, func(_, n int, rng *rand.Rand) int { return rng.IntN(n) })
}

func benchmarkRegister(b *testing.B, pick func(i, n int, rng *rand.Rand) int) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			s := filled(b, n)
			defer s.Close()
			record := make([]byte, 200)
			regs := make([]store.Registration, n)
			for i := range regs {
				regs[i] = benchReg(i, record)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			limits := store.Limits{MaxRegistrationsPerPeer: 1000, MaxRegistrations: 2 * n, MaxNamespaces: n}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := s.Register(context.Background(), regs[pick(i, n, rng)], limits, benchNow); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkDiscover100 reads a page of 100 registrations from a random
// position in a random namespace of a store of each size.
func BenchmarkDiscover100(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			s := filled(b, n)
			defer s.Close()
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap := float64(after.HeapInuse) - float64(before.HeapInuse)
			// The sequence numbers of each namespace's first registration.
			firsts := map[string]uint64{}
			all, _ := s.Discover(context.Background(), "", 0, n, benchNow)
			for _, r := range all {
				if _, ok := firsts[r.Namespace]; !ok {
					firsts[r.Namespace] = r.Seq
				}
			}
			names := make([]string, n/benchPerNamespace)
			for i := range names {
				names[i] = fmt.Sprintf("ns-%d", i)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			for b.Loop() {
				ns := names[rng.IntN(len(names))]
				after := firsts[ns] + uint64(rng.IntN(benchPerNamespace-100))
				regs, err := s.Discover(context.Background(), ns, after, 100, benchNow)
				if err != nil || len(regs) != 100 {
					b.Fatalf("got %d registrations, %v", len(regs), err)
				}
			}
			// After the loop: its first call drops metrics.
			b.ReportMetric(heap, "heap-bytes")
		})
	}
}
