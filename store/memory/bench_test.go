package memory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
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

// benchSizes are the sizes of the stores benchmarked: 10^3 alone with
// -short (CI runs the benchmarks once that way, for correctness).
func benchSizes() []int {
	if testing.Short() {
		return []int{1_000}
	}
	return []int{1_000, 100_000, 1_000_000}
}

// benchHeld is how many registrations the "among" benchmarks keep in memory
// whatever the size of the store they measure: the largest size (10^4
// with -short).
func benchHeld() int {
	if testing.Short() {
		return 10_000
	}
	return 1_000_000
}

var benchNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// benchNamespaces and benchPeers name the namespaces and peers of the
// benchmarks' registrations: the i-th registration of a store is peer
// i%benchPerNamespace in namespace i/benchPerNamespace.
var benchNamespaces, benchPeers = func() ([]string, []peer.ID) {
	names := make([]string, 1_000_000/benchPerNamespace)
	for i := range names {
		names[i] = fmt.Sprintf("ns-%d", i)
	}
	peers := make([]peer.ID, benchPerNamespace)
	for i := range peers {
		peers[i] = peer.ID(fmt.Sprintf("peer-%d", i))
	}
	return names, peers
}()

// benchRecord is the record of every benchmark registration.
var benchRecord = make([]byte, 200)

// benchReg is the i-th registration of a benchmark store, registered to
// expire at benchExpires(expiry).
func benchReg(i, expiry int) store.Registration {
	return store.Registration{
		Namespace: benchNamespaces[i/benchPerNamespace],
		Peer:      benchPeers[i%benchPerNamespace],
		Record:    benchRecord,
		Expires:   benchExpires(expiry),
	}
}

// benchExpires is when the i-th registration of a benchmark expires: each
// later than the one before.
func benchExpires(i int) time.Time {
	return benchNow.Add(time.Hour + time.Duration(i)*time.Millisecond)
}

// benchFleet is the stores one benchmark runs against, all of one size, with
// what the benchmark needs to know of each.
type benchFleet struct {
	size   int
	stores []*memory.Store
	firsts []map[string]uint64 // of each store, each namespace's first seq
	heap   float64             // heap in use after filling, minus before
}

// newFleet fills count stores of size registrations each.
func newFleet(b *testing.B, size, count int) *benchFleet {
	b.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := &benchFleet{size: size}
	for range count {
		s := memory.New()
		for i := range size {
			if _, err := s.Register(context.Background(), benchReg(i, i), store.Limits{}, benchNow); err != nil {
				b.Fatal(err)
			}
		}
		f.stores = append(f.stores, s)
	}
	// Collect the garbage of filling now, so that no collection started by
	// it runs during the timed loop.
	runtime.GC()
	runtime.ReadMemStats(&after)
	f.heap = float64(after.HeapInuse) - float64(before.HeapInuse)
	for _, s := range f.stores {
		firsts := make(map[string]uint64)
		for _, ns := range benchNamespaces[:size/benchPerNamespace] {
			regs, err := s.Discover(context.Background(), nil, ns, 0, 1, benchNow)
			if err != nil || len(regs) != 1 {
				b.Fatalf("namespace %s: %d registrations, %v", ns, len(regs), err)
			}
			firsts[ns] = regs[0].Seq
		}
		f.firsts = append(f.firsts, firsts)
	}
	b.Cleanup(func() {
		for _, s := range f.stores {
			_ = s.Close()
		}
	})
	return f
}

// held is how many registrations the fleet holds.
func (f *benchFleet) held() int { return f.size * len(f.stores) }

// runFleets runs bench against a store of each size, twice: "alone", the
// only store in memory, and "among", one of the benchHeld()/size stores that
// hold benchHeld() registrations in all, each operation going to one of them
// at random. Alone, a small store sits in the CPU caches and a large one in
// main memory; among, every size pays the same for the memory it touches, so
// what differs between sizes is the cost of the store's size itself.
func runFleets(b *testing.B, bench func(b *testing.B, f *benchFleet)) {
	for _, size := range benchSizes() {
		b.Run(fmt.Sprintf("size=%d/alone", size), func(b *testing.B) {
			bench(b, newFleet(b, size, 1))
		})
		if size < benchHeld() {
			b.Run(fmt.Sprintf("size=%d/among=%d", size, benchHeld()), func(b *testing.B) {
				bench(b, newFleet(b, size, benchHeld()/size))
			})
		}
	}
}

// BenchmarkRegister refreshes the oldest registration, as clients' refresh
// timers do (each refreshes at a fixed fraction of its TTL, so the oldest
// registration is the next refreshed): the refreshed registration expires
// after all the others, and the size stays the same. Among several stores,
// the oldest registration of them all is refreshed: the workload is the same
// as on one store of them all.
func BenchmarkRegister(b *testing.B) {
	runFleets(b, func(b *testing.B, f *benchFleet) {
		benchmarkRegister(b, f, func(i int, _ *rand.Rand) int { return i % f.held() })
	})
}

// BenchmarkRegisterRandom refreshes registrations in random order: every
// index is touched at a random place, the worst case for the memory
// hierarchy.
func BenchmarkRegisterRandom(b *testing.B) {
	runFleets(b, func(b *testing.B, f *benchFleet) {
		benchmarkRegister(b, f, func(_ int, rng *rand.Rand) int { return rng.IntN(f.held()) })
	})
}

// benchmarkRegister refreshes, at the i-th operation, the registration
// pick(i) of the fleet, counting registrations store by store in the order
// they were made.
func benchmarkRegister(b *testing.B, f *benchFleet, pick func(i int, rng *rand.Rand) int) {
	rng := rand.New(rand.NewPCG(1, 2))
	limits := store.Limits{MaxRegistrationsPerPeer: 1000, MaxRegistrations: 2 * f.size, MaxNamespaces: f.size}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		g := pick(i, rng)
		r := benchReg(g%f.size, f.held()+i)
		if _, err := f.stores[g/f.size].Register(context.Background(), r, limits, benchNow); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDiscover100 reads a page of 100 registrations from a random
// position in a random namespace of a store, into a buffer reused from page
// to page as the server does.
func BenchmarkDiscover100(b *testing.B) {
	runFleets(b, func(b *testing.B, f *benchFleet) {
		names := benchNamespaces[:f.size/benchPerNamespace]
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]store.Registration, 0, 100)
		b.ReportAllocs()
		for b.Loop() {
			k := rng.IntN(len(f.stores))
			ns := names[rng.IntN(len(names))]
			after := f.firsts[k][ns] + uint64(rng.IntN(benchPerNamespace-100))
			regs, err := f.stores[k].Discover(context.Background(), buf[:0], ns, after, 100, benchNow)
			if err != nil || len(regs) != 100 {
				b.Fatalf("got %d registrations, %v", len(regs), err)
			}
		}
		// After the loop: its first call drops metrics.
		b.ReportMetric(f.heap, "heap-bytes")
	})
}

// BenchmarkMapReference looks up a random key in Go's built-in map, alone
// and among maps holding benchHeld() keys in all, as the store benchmarks do:
// what one random access into memory costs as it grows, whatever the
// structure, for comparison with the store's figures.
func BenchmarkMapReference(b *testing.B) {
	for _, size := range benchSizes() {
		counts := []int{1}
		if size < benchHeld() {
			counts = append(counts, benchHeld()/size)
		}
		for _, count := range counts {
			name := fmt.Sprintf("size=%d/alone", size)
			if count > 1 {
				name = fmt.Sprintf("size=%d/among=%d", size, benchHeld())
			}
			b.Run(name, func(b *testing.B) {
				maps := make([]map[string]uint64, count)
				keys := make([][]string, count)
				for k := range maps {
					maps[k] = make(map[string]uint64)
					for i := range size {
						key := fmt.Sprintf("ns-%d/peer-%d", i/benchPerNamespace, i%benchPerNamespace)
						keys[k] = append(keys[k], key)
						maps[k][key] = uint64(i)
					}
				}
				runtime.GC()
				rng := rand.New(rand.NewPCG(1, 2))
				var sum uint64
				for b.Loop() {
					k := rng.IntN(count)
					sum += maps[k][keys[k][rng.IntN(size)]]
				}
				if sum == 0 {
					b.Fatal("no key found")
				}
			})
		}
	}
}

// BenchmarkHeldBytes fills a store as a point's clients would: 1000 peers,
// each with a signed record of 200 bytes of its own, registering in
// size/1000 namespaces, every REGISTER bringing its own copies of the
// namespace, the peer ID and the record (as the server decodes them from
// each request), each peer from an address of its own. It reports the heap
// the store holds per registration ("heap-bytes/reg"), all of it counted:
// what the caller's copies leave behind is garbage unless the store keeps
// it. One operation is the fill.
func BenchmarkHeldBytes(b *testing.B) {
	sizes := []int{100_000, 1_000_000}
	if testing.Short() {
		sizes = []int{1_000}
	}
	for _, size := range sizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			records := make([][]byte, benchPerNamespace)
			for p := range records {
				records[p] = make([]byte, 200)
				records[p][0], records[p][1] = byte(p), byte(p>>8)
			}
			var perReg float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				s := memory.New()
				for i := range size {
					p := i % benchPerNamespace
					r := store.Registration{
						Namespace: fmt.Sprintf("ns-%d", i/benchPerNamespace),
						Peer:      peer.ID(fmt.Sprintf("12D3KooWpeer-%034d", p)),
						Record:    append([]byte(nil), records[p]...),
						Expires:   benchExpires(i),
						Source:    netip.AddrFrom4([4]byte{10, 0, byte(p >> 8), byte(p)}),
					}
					if _, err := s.Register(context.Background(), r, store.Limits{}, benchNow); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perReg = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(size)
				runtime.KeepAlive(s)
				_ = s.Close()
			}
			b.ReportMetric(perReg, "heap-bytes/reg")
		})
	}
}
