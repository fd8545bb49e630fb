// Package storetest is the conformance suite of store.Store: the behaviour
// every backend must have, defined once. A backend's test calls Run with a
// function that opens a new, empty store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/store"
)

// Opener opens a new, empty store for one test. The store is closed by the
// suite; the opener registers any other clean-up with t.Cleanup.
type Opener func(t *testing.T) store.Store

// epoch is the suite's "now": a fixed instant, so that expiry is decided by
// the times the tests pass and never by the wall clock.
var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// Run runs the whole suite against stores made by open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"RegisterThenDiscover", testRegisterThenDiscover},
		{"ReplaceKeepsOneWithNewSeq", testReplace},
		{"SequenceGrows", testSequenceGrows},
		{"NamespacesAreSeparate", testNamespacesAreSeparate},
		{"NamespaceKeptByteForByte", testNamespaceBytes},
		{"DiscoverAllInSequenceOrder", testDiscoverAll},
		{"DiscoverAfterAndLimit", testDiscoverAfterAndLimit},
		{"DiscoverAppendsToDst", testDiscoverAppends},
		{"ExpiredNeverServed", testExpiredNeverServed},
		{"Unregister", testUnregister},
		{"UnregisterMissingIsNoop", testUnregisterMissing},
		{"PeerLimit", testPeerLimit},
		{"PeerLimitIgnoresExpired", testPeerLimitIgnoresExpired},
		{"TotalLimit", testTotalLimit},
		{"NamespaceLimit", testNamespaceLimit},
		{"Stats", testStats},
		{"ConcurrentRegistersChainComplete", testConcurrentChain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

func pid(i int) peer.ID { return peer.ID(fmt.Sprintf("peer-%06d", i)) }

func reg(ns string, p peer.ID, ttl time.Duration) store.Registration {
	return store.Registration{Namespace: ns, Peer: p, Record: []byte("record of " + string(p) + " in " + ns), Expires: epoch.Add(ttl)}
}

func mustRegister(t *testing.T, s store.Store, r store.Registration) uint64 {
	t.Helper()
	seq, err := s.Register(context.Background(), r, store.Limits{}, epoch)
	if err != nil {
		t.Fatalf("Register(%s, %s): %v", r.Namespace, r.Peer, err)
	}
	return seq
}

func discover(t *testing.T, s store.Store, ns string, after uint64, limit int, now time.Time) []store.Registration {
	t.Helper()
	regs, err := s.Discover(context.Background(), nil, ns, after, limit, now)
	if err != nil {
		t.Fatalf("Discover(%q, %d, %d): %v", ns, after, limit, err)
	}
	return regs
}

func keys(regs []store.Registration) []string {
	out := make([]string, len(regs))
	for i, r := range regs {
		out[i] = r.Namespace + "/" + string(r.Peer)
	}
	return out
}

func wantKeys(t *testing.T, regs []store.Registration, want ...string) {
	t.Helper()
	got := keys(regs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func testRegisterThenDiscover(t *testing.T, s store.Store) {
	r := reg("ns", pid(1), time.Hour)
	seq := mustRegister(t, s, r)
	regs := discover(t, s, "ns", 0, 10, epoch)
	wantKeys(t, regs, "ns/"+string(pid(1)))
	got := regs[0]
	if string(got.Record) != string(r.Record) || !got.Expires.Equal(r.Expires) || got.Seq != seq {
		t.Fatalf("got %+v, want record %q expires %v seq %d", got, r.Record, r.Expires, seq)
	}
}

func testReplace(t *testing.T, s store.Store) {
	first := mustRegister(t, s, reg("ns", pid(1), time.Hour))
	r := reg("ns", pid(1), 3*time.Hour)
	r.Record = []byte("new record")
	second := mustRegister(t, s, r)
	if second <= first {
		t.Fatalf("replacing gave seq %d, not above %d", second, first)
	}
	regs := discover(t, s, "ns", 0, 10, epoch)
	wantKeys(t, regs, "ns/"+string(pid(1)))
	if string(regs[0].Record) != "new record" || !regs[0].Expires.Equal(r.Expires) || regs[0].Seq != second {
		t.Fatalf("got %+v, want the replacement", regs[0])
	}
	// A poller that had seen the first registration sees the replacement.
	wantKeys(t, discover(t, s, "ns", first, 10, epoch), "ns/"+string(pid(1)))
	wantKeys(t, discover(t, s, "ns", second, 10, epoch))
}

func testSequenceGrows(t *testing.T, s store.Store) {
	var last uint64
	for i := range 20 {
		seq := mustRegister(t, s, reg(fmt.Sprintf("ns%d", i%3), pid(i%7), time.Hour))
		if seq <= last {
			t.Fatalf("registration %d got seq %d, not above %d", i, seq, last)
		}
		last = seq
		if i%5 == 0 {
			if err := s.Unregister(context.Background(), "ns0", pid(0)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func testNamespacesAreSeparate(t *testing.T, s store.Store) {
	mustRegister(t, s, reg("a", pid(1), time.Hour))
	mustRegister(t, s, reg("b", pid(2), time.Hour))
	mustRegister(t, s, reg("ab", pid(3), time.Hour))
	wantKeys(t, discover(t, s, "a", 0, 10, epoch), "a/"+string(pid(1)))
	wantKeys(t, discover(t, s, "b", 0, 10, epoch), "b/"+string(pid(2)))
	wantKeys(t, discover(t, s, "unknown", 0, 10, epoch))
}

func testNamespaceBytes(t *testing.T, s store.Store) {
	// A NUL is valid UTF-8; "a" must not match the "a\x00b" namespace.
	names := []string{"a\x00b", "ünïcødé/☃", "a"}
	for _, ns := range names {
		mustRegister(t, s, reg(ns, pid(1), time.Hour))
	}
	for _, ns := range names {
		regs := discover(t, s, ns, 0, 10, epoch)
		if len(regs) != 1 || regs[0].Namespace != ns {
			t.Fatalf("discover %q gave %v", ns, keys(regs))
		}
	}
}

func testDiscoverAll(t *testing.T, s store.Store) {
	mustRegister(t, s, reg("b", pid(1), time.Hour))
	mustRegister(t, s, reg("a", pid(2), time.Hour))
	mustRegister(t, s, reg("c", pid(1), time.Hour))
	mustRegister(t, s, reg("b", pid(1), time.Hour)) // refresh moves it last
	wantKeys(t, discover(t, s, "", 0, 10, epoch),
		"a/"+string(pid(2)), "c/"+string(pid(1)), "b/"+string(pid(1)))
}

// testDiscoverAppends: Discover appends after what dst holds, leaves it be,
// and counts the limit from there; one buffer serves page after page.
func testDiscoverAppends(t *testing.T, s store.Store) {
	for i := range 3 {
		mustRegister(t, s, reg("ns", pid(i), time.Hour))
	}
	sentinel := store.Registration{Namespace: "sentinel"}
	buf := make([]store.Registration, 1, 8)
	buf[0] = sentinel
	regs, err := s.Discover(context.Background(), buf, "ns", 0, 2, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 3 || regs[0].Namespace != "sentinel" {
		t.Fatalf("got %v, want the sentinel then 2 registrations", keys(regs))
	}
	wantKeys(t, regs[1:], "ns/"+string(pid(0)), "ns/"+string(pid(1)))
	regs, err = s.Discover(context.Background(), regs[:0], "ns", regs[2].Seq, 2, epoch)
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, regs, "ns/"+string(pid(2)))
	regs, err = s.Discover(context.Background(), regs[:0], "missing", 0, 2, epoch)
	if err != nil || len(regs) != 0 {
		t.Fatalf("unknown namespace: got %v, %v", keys(regs), err)
	}
}

func testDiscoverAfterAndLimit(t *testing.T, s store.Store) {
	var want []string
	for i := range 11 {
		mustRegister(t, s, reg("ns", pid(i), time.Hour))
		mustRegister(t, s, reg("other", pid(i), time.Hour))
		want = append(want, "ns/"+string(pid(i)))
	}
	var got []string
	var after uint64
	pages := 0
	for {
		regs := discover(t, s, "ns", after, 5, epoch)
		if len(regs) == 0 {
			break
		}
		if len(regs) > 5 {
			t.Fatalf("page of %d above limit 5", len(regs))
		}
		for i, r := range regs {
			if r.Seq <= after || (i > 0 && r.Seq <= regs[i-1].Seq) {
				t.Fatalf("page not in increasing sequence after %d: %v", after, regs)
			}
		}
		got = append(got, keys(regs)...)
		after = regs[len(regs)-1].Seq
		pages++
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if pages != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%d pages %v, want 3 pages %v", pages, got, want)
	}
	mustRegister(t, s, reg("ns", pid(99), time.Hour))
	wantKeys(t, discover(t, s, "ns", after, 5, epoch), "ns/"+string(pid(99)))
}

func testExpiredNeverServed(t *testing.T, s store.Store) {
	mustRegister(t, s, reg("ns", pid(1), time.Minute))
	mustRegister(t, s, reg("ns", pid(2), time.Hour))
	mustRegister(t, s, reg("other", pid(3), time.Minute))
	later := epoch.Add(time.Minute) // expiry is exclusive: at Expires it is gone
	wantKeys(t, discover(t, s, "ns", 0, 10, later), "ns/"+string(pid(2)))
	wantKeys(t, discover(t, s, "", 0, 10, later), "ns/"+string(pid(2)))
	st, err := s.Stats(context.Background(), later)
	if err != nil {
		t.Fatal(err)
	}
	if st.Registrations != 1 || st.Namespaces != 1 {
		t.Fatalf("stats after expiry %+v, want 1 registration in 1 namespace", st)
	}
}

func testUnregister(t *testing.T, s store.Store) {
	mustRegister(t, s, reg("ns", pid(1), time.Hour))
	mustRegister(t, s, reg("ns", pid(2), time.Hour))
	mustRegister(t, s, reg("other", pid(1), time.Hour))
	if err := s.Unregister(context.Background(), "ns", pid(1)); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, discover(t, s, "ns", 0, 10, epoch), "ns/"+string(pid(2)))
	wantKeys(t, discover(t, s, "other", 0, 10, epoch), "other/"+string(pid(1)))
}

func testUnregisterMissing(t *testing.T, s store.Store) {
	mustRegister(t, s, reg("ns", pid(1), time.Hour))
	for _, c := range []struct {
		ns string
		p  peer.ID
	}{{"never", pid(1)}, {"ns", pid(2)}} {
		if err := s.Unregister(context.Background(), c.ns, c.p); err != nil {
			t.Fatalf("Unregister(%s, %s): %v", c.ns, c.p, err)
		}
	}
	wantKeys(t, discover(t, s, "ns", 0, 10, epoch), "ns/"+string(pid(1)))
}

func testPeerLimit(t *testing.T, s store.Store) {
	limits := store.Limits{MaxRegistrationsPerPeer: 5}
	ctx := context.Background()
	for i := range 5 {
		if _, err := s.Register(ctx, reg(fmt.Sprintf("ns%d", i), pid(1), time.Hour), limits, epoch); err != nil {
			t.Fatalf("registration %d of 5: %v", i+1, err)
		}
	}
	if _, err := s.Register(ctx, reg("ns5", pid(1), time.Hour), limits, epoch); !errors.Is(err, store.ErrPeerLimit) {
		t.Fatalf("6th registration: %v, want ErrPeerLimit", err)
	}
	if _, err := s.Register(ctx, reg("ns3", pid(1), 2*time.Hour), limits, epoch); err != nil {
		t.Fatalf("refresh at the cap: %v", err)
	}
	if _, err := s.Register(ctx, reg("ns5", pid(2), time.Hour), limits, epoch); err != nil {
		t.Fatalf("another peer: %v", err)
	}
	if err := s.Unregister(ctx, "ns0", pid(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, reg("ns5", pid(1), time.Hour), limits, epoch); err != nil {
		t.Fatalf("after unregistering one: %v", err)
	}
	wantKeys(t, discover(t, s, "ns5", 0, 10, epoch), "ns5/"+string(pid(2)), "ns5/"+string(pid(1)))
}

func testPeerLimitIgnoresExpired(t *testing.T, s store.Store) {
	limits := store.Limits{MaxRegistrationsPerPeer: 2}
	ctx := context.Background()
	mustRegister(t, s, reg("a", pid(1), time.Minute))
	mustRegister(t, s, reg("b", pid(1), time.Minute))
	later := epoch.Add(2 * time.Minute)
	r := reg("c", pid(1), time.Hour)
	if _, err := s.Register(ctx, r, limits, later); err != nil {
		t.Fatalf("registering after the others expired: %v", err)
	}
}

func testTotalLimit(t *testing.T, s store.Store) {
	limits := store.Limits{MaxRegistrations: 3}
	ctx := context.Background()
	for i := range 3 {
		if _, err := s.Register(ctx, reg("ns", pid(i), time.Hour), limits, epoch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Register(ctx, reg("ns", pid(3), time.Hour), limits, epoch); !errors.Is(err, store.ErrFull) {
		t.Fatalf("4th registration: %v, want ErrFull", err)
	}
	if _, err := s.Register(ctx, reg("ns", pid(0), 2*time.Hour), limits, epoch); err != nil {
		t.Fatalf("refresh when full: %v", err)
	}
	if _, err := s.Register(ctx, reg("ns", pid(3), time.Hour), limits, epoch.Add(3*time.Hour)); err != nil {
		t.Fatalf("after the others expired: %v", err)
	}
}

func testNamespaceLimit(t *testing.T, s store.Store) {
	limits := store.Limits{MaxNamespaces: 2}
	ctx := context.Background()
	for _, ns := range []string{"a", "b"} {
		if _, err := s.Register(ctx, reg(ns, pid(1), time.Hour), limits, epoch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Register(ctx, reg("c", pid(1), time.Hour), limits, epoch); !errors.Is(err, store.ErrFull) {
		t.Fatalf("3rd namespace: %v, want ErrFull", err)
	}
	if _, err := s.Register(ctx, reg("a", pid(2), time.Hour), limits, epoch); err != nil {
		t.Fatalf("existing namespace: %v", err)
	}
}

func testStats(t *testing.T, s store.Store) {
	mustRegister(t, s, reg("a", pid(1), time.Hour))
	mustRegister(t, s, reg("a", pid(2), time.Hour))
	mustRegister(t, s, reg("b", pid(1), time.Hour))
	mustRegister(t, s, reg("b", pid(1), time.Hour))
	st, err := s.Stats(context.Background(), epoch)
	if err != nil {
		t.Fatal(err)
	}
	if st != (store.Stats{Registrations: 3, Namespaces: 2}) {
		t.Fatalf("stats %+v, want 3 registrations in 2 namespaces", st)
	}
}

// testConcurrentChain has writers register while a reader follows the cookie
// chain: the reader must see every registration, each once per version.
func testConcurrentChain(t *testing.T, s store.Store) {
	const writers, perWriter = 4, 50
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if _, err := s.Register(ctx, reg("ns", pid(w*perWriter+i), time.Hour), store.Limits{}, epoch); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	seen := map[peer.ID]int{}
	var after uint64
	poll := func() {
		regs := discover(t, s, "ns", after, 7, epoch)
		for _, r := range regs {
			seen[r.Peer]++
			after = r.Seq
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			poll()
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for range writers * perWriter {
		before := after
		poll()
		if after == before {
			break
		}
	}
	if len(seen) != writers*perWriter {
		t.Fatalf("the chain saw %d peers, want %d", len(seen), writers*perWriter)
	}
	for p, n := range seen {
		if n != 1 {
			t.Fatalf("the chain saw %s %d times", p, n)
		}
	}
}
