package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/postgres"
)

// Many writers per point make each point's writer apply REGISTERs in
// batches: these tests hold the batches to what one REGISTER at a time
// guarantees.

const (
	batchPoints  = 2
	batchWriters = 32 // per point
)

// twoPoints opens two stores, two pools, on one new schema.
func twoPoints(t *testing.T) []*postgres.Store {
	dsn, schema := newSchema(t)
	var stores []*postgres.Store
	for range batchPoints {
		stores = append(stores, open(t, dsn, schema))
	}
	return stores
}

// each runs f from batchWriters goroutines at each store, and waits.
func each(stores []*postgres.Store, f func(s *postgres.Store, point, g int)) {
	var wg sync.WaitGroup
	for i, s := range stores {
		for g := range batchWriters {
			wg.Go(func() { f(s, i, g) })
		}
	}
	wg.Wait()
}

// TestBatchTotalAndPeerLimits: 64 writers at two points race past the
// per-peer and total limits: exactly the total is accepted, no peer above
// its limit.
func TestBatchTotalAndPeerLimits(t *testing.T) {
	t.Parallel()
	stores := twoPoints(t)
	ctx := context.Background()
	const perPeer, total, peers = 3, 100, 50 // 150 possible: the total binds
	lim := store.Limits{MaxRegistrationsPerPeer: perPeer, MaxRegistrations: total}
	var ok atomic.Int64
	each(stores, func(s *postgres.Store, i, g int) {
		for k := range 10 {
			p := pid((g*7 + k) % peers)
			_, err := s.Register(ctx, reg(fmt.Sprintf("ns-%d-%d-%d", i, g, k), p, epoch.Add(time.Hour)), lim, epoch)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrPeerLimit), errors.Is(err, store.ErrFull):
			default:
				t.Error(err)
				return
			}
		}
	})
	checkLimitsHeld(t, stores, perPeer, total, ok.Load())
}

// checkLimitsHeld fails t unless the stores hold exactly total
// registrations, all accepted ones, and no peer holds more than perPeer.
func checkLimitsHeld(t *testing.T, stores []*postgres.Store, perPeer, total int, accepted int64) {
	t.Helper()
	ctx := context.Background()
	regs, err := stores[0].Discover(ctx, nil, "", 0, 1000, epoch)
	if err != nil {
		t.Fatal(err)
	}
	per := map[peer.ID]int{}
	for _, r := range regs {
		per[r.Peer]++
	}
	for p, n := range per {
		if n > perPeer {
			t.Errorf("%s has %d registrations, above %d", p, n, perPeer)
		}
	}
	st, err := stores[len(stores)-1].Stats(ctx, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if accepted != int64(total) || len(regs) != total || st.Registrations != total {
		t.Fatalf("accepted %d, stored %d, stats %+v; want the total limit %d", accepted, len(regs), st, total)
	}
}

// TestBatchSourceQuotas: 64 writers at two points register from five
// addresses in each of four /24 networks, 32 attempts per address: every
// network holds exactly its quota, no address more than its own.
func TestBatchSourceQuotas(t *testing.T) {
	t.Parallel()
	stores := twoPoints(t)
	ctx := context.Background()
	const perAddr, perNet, nets = 3, 12, 4 // five addresses could hold 15: the network binds
	lim := store.Limits{MaxPerIPv4Address: perAddr, MaxPerIPv4Net: perNet}
	var mu sync.Mutex
	byAddr, byNet := map[netip.Addr]int{}, map[byte]int{}
	each(stores, func(s *postgres.Store, i, g int) {
		for k := range 10 {
			r := reg("quota", pid(i*10000+g*100+k), epoch.Add(time.Hour))
			r.Source = netip.AddrFrom4([4]byte{10, 0, byte(g % nets), byte(1 + (g/nets+k)%5)})
			_, err := s.Register(ctx, r, lim, epoch)
			switch {
			case err == nil:
				mu.Lock()
				byAddr[r.Source]++
				byNet[r.Source.As4()[2]]++
				mu.Unlock()
			case errors.Is(err, store.ErrQuota):
			default:
				t.Error(err)
				return
			}
		}
	})
	for a, n := range byAddr {
		if n > perAddr {
			t.Errorf("%s holds %d registrations, above %d", a, n, perAddr)
		}
	}
	for n := range byte(nets) {
		if byNet[n] != perNet {
			t.Errorf("10.0.%d.0/24 holds %d registrations, want its quota %d", n, byNet[n], perNet)
		}
	}
	st, err := stores[0].Stats(ctx, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if st.Registrations != nets*perNet {
		t.Fatalf("stats %+v, want %d registrations", st, nets*perNet)
	}
}

// TestBatchSequence: 64 writers at two points register and refresh. Every
// sequence number is unique and greater than every one acknowledged before
// its REGISTER began, and Discover returns exactly the last of each, in
// order.
func TestBatchSequence(t *testing.T) {
	t.Parallel()
	stores := twoPoints(t)
	ctx := context.Background()
	var (
		maxAcked atomic.Uint64
		mu       sync.Mutex
		seqs     = map[uint64]bool{}
		last     = map[string]uint64{}
	)
	each(stores, func(s *postgres.Store, i, g int) {
		for k := range 20 {
			// Refresh each of 5 registrations 4 times, now from one
			// point, now from the other.
			p := pid(g*10 + k%5)
			before := maxAcked.Load()
			seq, err := s.Register(ctx, reg(fmt.Sprint("seq-", i), p, epoch.Add(time.Hour)), store.Limits{}, epoch)
			if err != nil {
				t.Error(err)
				return
			}
			if seq <= before {
				t.Errorf("seq %d, not above %d acknowledged before the REGISTER began", seq, before)
			}
			for m := maxAcked.Load(); m < seq && !maxAcked.CompareAndSwap(m, seq); m = maxAcked.Load() {
			}
			mu.Lock()
			if seqs[seq] {
				t.Errorf("seq %d returned twice", seq)
			}
			seqs[seq] = true
			last[fmt.Sprint("seq-", i, "/", p)] = seq
			mu.Unlock()
		}
	})
	regs, err := stores[1].Discover(ctx, nil, "", 0, 10000, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != len(last) {
		t.Fatalf("%d registrations, want %d", len(regs), len(last))
	}
	for i, r := range regs {
		if i > 0 && r.Seq <= regs[i-1].Seq {
			t.Fatalf("seq %d after %d", r.Seq, regs[i-1].Seq)
		}
		if k := fmt.Sprint(r.Namespace, "/", r.Peer); last[k] != r.Seq {
			t.Errorf("%s: seq %d stored, %d acknowledged last", k, r.Seq, last[k])
		}
	}
}

// TestBatchCookies: 64 writers at two points each make 30 registrations,
// while a reader pages through them with small pages, alternating points,
// each page from the cookie of the last. Every registration is made once,
// so the reader must see each exactly once: one passed over is never seen.
func TestBatchCookies(t *testing.T) {
	t.Parallel()
	stores := twoPoints(t)
	ctx := context.Background()
	const perWriter, pageSize = 30, 10
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		each(stores, func(s *postgres.Store, i, g int) {
			for k := range perWriter {
				if _, err := s.Register(ctx, reg("cookies", pid(i*100000+g*1000+k), epoch.Add(time.Hour)), store.Limits{}, epoch); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}()
	seen := map[peer.ID]int{}
	var after uint64
	var page []store.Registration
	pages := 0
	for done := false; ; pages++ {
		select {
		case <-writing:
			done = true
		default:
		}
		var err error
		page, err = stores[pages%2].Discover(ctx, page[:0], "cookies", after, pageSize, epoch)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			if r.Seq <= after {
				t.Fatalf("seq %d after cookie %d", r.Seq, after)
			}
			after = r.Seq
			seen[r.Peer]++
		}
		if done && len(page) == 0 {
			break
		}
	}
	want := batchPoints * batchWriters * perWriter
	missed := 0
	for i := range batchPoints {
		for g := range batchWriters {
			for k := range perWriter {
				if n := seen[pid(i*100000+g*1000+k)]; n != 1 {
					missed++
					if missed <= 5 {
						t.Errorf("point %d writer %d registration %d seen %d times", i, g, k, n)
					}
				}
			}
		}
	}
	if missed > 0 {
		t.Fatalf("%d of %d registrations not seen exactly once", missed, want)
	}
	t.Logf("%d registrations at %d points, %d pages", want, batchPoints, pages)
}

// TestBatchFullOfExpired: the store holds the total limit of registrations,
// all expired; 64 writers at two points then register: what expired is
// removed within the batches, and exactly the limit is accepted.
func TestBatchFullOfExpired(t *testing.T) {
	t.Parallel()
	stores := twoPoints(t)
	ctx := context.Background()
	const total = 100
	lim := store.Limits{MaxRegistrations: total, MaxNamespaces: 5}
	for i := range total {
		if _, err := stores[i%2].Register(ctx, reg(fmt.Sprint("old-", i%5), pid(1000000+i), epoch.Add(time.Second)), lim, epoch); err != nil {
			t.Fatal(err)
		}
	}
	later := epoch.Add(2 * time.Second)
	var ok atomic.Int64
	each(stores, func(s *postgres.Store, i, g int) {
		for k := range 5 {
			_, err := s.Register(ctx, reg(fmt.Sprint("new-", (g+k)%5), pid(i*10000+g*100+k), later.Add(time.Hour)), lim, later)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrFull):
			default:
				t.Error(err)
				return
			}
		}
	})
	st, err := stores[0].Stats(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != total || st.Registrations != total || st.Namespaces != 5 {
		t.Fatalf("accepted %d, stats %+v; want %d registrations in 5 namespaces", ok.Load(), st, total)
	}
}

// TestBatchFails: while another transaction holds the registrations table
// against writes, 32 REGISTERs are decided but cannot be written: their
// batches time out, every one of them gets ErrUnavailable, and none is
// stored.
func TestBatchFails(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	s := open(t, dsn, schema, postgres.WithOpTimeout(300*time.Millisecond))
	ctx := context.Background()
	if _, err := s.Register(ctx, reg("held", pid(0), epoch.Add(time.Hour)), store.Limits{}, epoch); err != nil {
		t.Fatal(err)
	}
	tx := beginTx(t, dsn)
	if _, err := tx.Exec(ctx, "LOCK TABLE "+schema+".rendezvous_registrations IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			seq, err := s.Register(ctx, reg("held", pid(1+i), epoch.Add(time.Hour)), store.Limits{MaxRegistrationsPerPeer: 10}, epoch)
			if !errors.Is(err, store.ErrUnavailable) || seq != 0 {
				t.Errorf("REGISTER %d: seq %d, error %v; want ErrUnavailable", i, seq, err)
			}
		})
	}
	wg.Wait()
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	regs, err := s.Discover(ctx, nil, "held", 0, 100, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 {
		t.Fatalf("%d registrations stored, want the first one alone", len(regs))
	}
	if _, err := s.Register(ctx, reg("held", pid(1), epoch.Add(time.Hour)), store.Limits{}, epoch); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
}
