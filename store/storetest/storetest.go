// Package storetest is the conformance suite of store.Store: the behaviour
// every backend must have, defined once. A backend's test calls Run with a
// function that opens a new, empty store.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
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
		{"DiscoverRecordsIntact", testDiscoverRecordsIntact},
		{"ExpiredNeverServed", testExpiredNeverServed},
		{"Unregister", testUnregister},
		{"UnregisterMissingIsNoop", testUnregisterMissing},
		{"PeerLimit", testPeerLimit},
		{"PeerLimitIgnoresExpired", testPeerLimitIgnoresExpired},
		{"PeerLimitReregistersExpired", testPeerLimitReregistersExpired},
		{"TotalLimit", testTotalLimit},
		{"NamespaceLimit", testNamespaceLimit},
		{"Stats", testStats},
		{"SourceQuotas", testSourceQuotas},
		{"SourceQuotaIgnoresExpiredAndUnregistered", testSourceQuotaIgnoresExpired},
		{"SourceQuotaRefreshNeverRefused", testSourceQuotaRefresh},
		{"SourceQuotaRefreshMovesSource", testSourceQuotaMoves},
		{"NoSourceCountsInNoQuota", testNoSource},
		{"SourceQuotaConcurrent", testSourceQuotaConcurrent},
		{"CrowdedRefusesLargeSources", testCrowded},
		{"CrowdedNamespaces", testCrowdedNamespaces},
		{"RefreshWhenFullAndCrowded", testRefreshWhenFull},
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

// testDiscoverRecordsIntact: every record of a page, of sizes from one
// byte to several kilobytes, comes back as it was registered, and stays so
// after later pages are read.
func testDiscoverRecordsIntact(t *testing.T, s store.Store) {
	want := map[peer.ID]string{}
	for i := range 24 {
		r := reg("ns", pid(i), time.Hour)
		r.Record = bytes.Repeat([]byte{byte('a' + i)}, 1+i*i*i%7000)
		want[r.Peer] = string(r.Record)
		mustRegister(t, s, r)
	}
	check := func(regs []store.Registration) {
		t.Helper()
		for _, r := range regs {
			if string(r.Record) != want[r.Peer] {
				t.Fatalf("record of %s: %d bytes starting %q, want %d bytes of %q", r.Peer, len(r.Record), r.Record[:min(len(r.Record), 4)], len(want[r.Peer]), want[r.Peer][:1])
			}
		}
	}
	first := discover(t, s, "ns", 0, 12, epoch)
	rest := discover(t, s, "", first[len(first)-1].Seq, 100, epoch)
	if len(first)+len(rest) != 24 {
		t.Fatalf("%d + %d registrations, want 24", len(first), len(rest))
	}
	check(first)
	check(rest)
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

// testPeerLimitReregistersExpired: a peer at its limit, one of whose
// registrations expired, registers that pair again; what is live then holds
// it to the limit.
func testPeerLimitReregistersExpired(t *testing.T, s store.Store) {
	limits := store.Limits{MaxRegistrationsPerPeer: 2}
	ctx := context.Background()
	mustRegister(t, s, reg("a", pid(1), time.Minute))
	mustRegister(t, s, reg("b", pid(1), time.Hour))
	later := epoch.Add(2 * time.Minute)
	if _, err := s.Register(ctx, reg("a", pid(1), time.Hour), limits, later); err != nil {
		t.Fatalf("registering an expired pair again: %v", err)
	}
	if _, err := s.Register(ctx, reg("c", pid(1), time.Hour), limits, later); !errors.Is(err, store.ErrPeerLimit) {
		t.Fatalf("a third live registration: %v, want %v", err, store.ErrPeerLimit)
	}
	wantKeys(t, discover(t, s, "", 0, 10, later), "b/"+string(pid(1)), "a/"+string(pid(1)))
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

func regFrom(ns string, p peer.ID, src string) store.Registration {
	r := reg(ns, p, time.Hour)
	if src != "" {
		r.Source = netip.MustParseAddr(src)
	}
	return r
}

// wantQuota checks that err is the refusal of the quota of bits, family and
// max.
func wantQuota(t *testing.T, err error, bits int, ipv6 bool, max int) {
	t.Helper()
	var qe *store.QuotaError
	if !errors.Is(err, store.ErrQuota) || !errors.As(err, &qe) {
		t.Fatalf("got %v, want ErrQuota", err)
	}
	if qe.Bits != bits || qe.IPv6 != ipv6 || qe.Max != max {
		t.Fatalf("got quota %+v, want /%d (IPv6 %v) of %d", *qe, bits, ipv6, max)
	}
}

// testSourceQuotas fills each per-source quota from sources of one prefix,
// then checks that one more from that prefix is refused, naming the quota,
// and changes nothing, while a source of another prefix still registers.
func testSourceQuotas(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i, tc := range []struct {
		name   string
		limits store.Limits
		bits   int
		ipv6   bool
		fill   []string // sources that fill the quota of 3
		more   string   // one more from the same prefix
		other  string   // a source of another prefix
	}{
		{"IPv4 address", store.Limits{MaxPerIPv4Address: 3}, 32, false,
			[]string{"192.0.2.1", "192.0.2.1", "::ffff:192.0.2.1"}, "192.0.2.1", "192.0.2.2"},
		{"IPv4 /24", store.Limits{MaxPerIPv4Net: 3}, 24, false,
			[]string{"198.51.100.1", "198.51.100.2", "198.51.100.3"}, "198.51.100.254", "198.51.101.1"},
		{"IPv6 /64", store.Limits{MaxPerIPv6Subnet: 3}, 64, true,
			[]string{"2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:ffff::3"}, "2001:db8:0:1::99", "2001:db8:0:2::1"},
		{"IPv6 /48", store.Limits{MaxPerIPv6Net: 3}, 48, true,
			[]string{"2001:db8:7:1::1", "2001:db8:7:2::1", "2001:db8:7:3::1"}, "2001:db8:7:ffff::1", "2001:db8:8::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := fmt.Sprintf("ns%d", i)
			for j, src := range tc.fill {
				if _, err := s.Register(ctx, regFrom(ns, pid(j), src), tc.limits, epoch); err != nil {
					t.Fatalf("registration %d of the quota: %v", j+1, err)
				}
			}
			_, err := s.Register(ctx, regFrom(ns, pid(10), tc.more), tc.limits, epoch)
			wantQuota(t, err, tc.bits, tc.ipv6, 3)
			// Another namespace is no way round it.
			_, err = s.Register(ctx, regFrom(ns+"-other", pid(10), tc.more), tc.limits, epoch)
			wantQuota(t, err, tc.bits, tc.ipv6, 3)
			if _, err := s.Register(ctx, regFrom(ns, pid(11), tc.other), tc.limits, epoch); err != nil {
				t.Fatalf("a source of another prefix: %v", err)
			}
			wantKeys(t, discover(t, s, ns, 0, 10, epoch),
				ns+"/"+string(pid(0)), ns+"/"+string(pid(1)), ns+"/"+string(pid(2)), ns+"/"+string(pid(11)))
		})
	}
}

func testSourceQuotaIgnoresExpired(t *testing.T, s store.Store) {
	ctx := context.Background()
	limits := store.Limits{MaxPerIPv4Net: 2}
	if _, err := s.Register(ctx, regFrom("a", pid(1), "203.0.113.1"), limits, epoch); err != nil {
		t.Fatal(err)
	}
	short := regFrom("a", pid(2), "203.0.113.2")
	short.Expires = epoch.Add(time.Minute)
	if _, err := s.Register(ctx, short, limits, epoch); err != nil {
		t.Fatal(err)
	}
	_, err := s.Register(ctx, regFrom("a", pid(3), "203.0.113.3"), limits, epoch)
	wantQuota(t, err, 24, false, 2)
	later := epoch.Add(2 * time.Minute)
	if _, err := s.Register(ctx, regFrom("a", pid(3), "203.0.113.3"), limits, later); err != nil {
		t.Fatalf("after one of the source's registrations expired: %v", err)
	}
	_, err = s.Register(ctx, regFrom("a", pid(4), "203.0.113.4"), limits, later)
	wantQuota(t, err, 24, false, 2)
	if err := s.Unregister(ctx, "a", pid(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, regFrom("a", pid(4), "203.0.113.4"), limits, later); err != nil {
		t.Fatalf("after one of the source's registrations was removed: %v", err)
	}
}

// testSourceQuotaRefresh: a live registration is refreshed at the quota,
// from the same source or from one whose quota is full.
func testSourceQuotaRefresh(t *testing.T, s store.Store) {
	ctx := context.Background()
	limits := store.Limits{MaxPerIPv4Address: 2, MaxPerIPv4Net: 3, MaxPerIPv6Subnet: 2, MaxPerIPv6Net: 3, MaxRegistrationsPerPeer: 2}
	for i, src := range []string{"192.0.2.1", "192.0.2.1", "192.0.2.2"} {
		if _, err := s.Register(ctx, regFrom("ns", pid(i), src), limits, epoch); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if _, err := s.Register(ctx, regFrom("ns6", pid(10+i), "2001:db8::1"), limits, epoch); i < 2 && err != nil {
			t.Fatal(err)
		}
	}
	for round := range 3 {
		for i, src := range []string{"192.0.2.1", "192.0.2.1", "192.0.2.2"} {
			r := regFrom("ns", pid(i), src)
			r.Expires = epoch.Add(time.Duration(2+round) * time.Hour)
			if _, err := s.Register(ctx, r, limits, epoch.Add(time.Duration(round)*time.Minute)); err != nil {
				t.Fatalf("refresh %d of %s at the quota: %v", round, pid(i), err)
			}
		}
	}
	// From a source whose own quota is full too.
	if _, err := s.Register(ctx, regFrom("ns", pid(0), "2001:db8::1"), limits, epoch); err != nil {
		t.Fatalf("refresh from a full source: %v", err)
	}
	if _, err := s.Register(ctx, regFrom("ns6", pid(10), "192.0.2.1"), limits, epoch); err != nil {
		t.Fatalf("refresh from a full source: %v", err)
	}
}

// testSourceQuotaMoves: a refresh from another source counts there from
// then on, and no longer at the old one.
func testSourceQuotaMoves(t *testing.T, s store.Store) {
	ctx := context.Background()
	limits := store.Limits{MaxPerIPv4Address: 1}
	if _, err := s.Register(ctx, regFrom("ns", pid(1), "192.0.2.1"), limits, epoch); err != nil {
		t.Fatal(err)
	}
	_, err := s.Register(ctx, regFrom("ns", pid(2), "192.0.2.1"), limits, epoch)
	wantQuota(t, err, 32, false, 1)
	if _, err := s.Register(ctx, regFrom("ns", pid(1), "192.0.2.9"), limits, epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, regFrom("ns", pid(2), "192.0.2.1"), limits, epoch); err != nil {
		t.Fatalf("the old source after its registration moved: %v", err)
	}
	_, err = s.Register(ctx, regFrom("other", pid(3), "192.0.2.9"), limits, epoch)
	wantQuota(t, err, 32, false, 1)
}

func testNoSource(t *testing.T, s store.Store) {
	ctx := context.Background()
	limits := store.Limits{MaxPerIPv4Address: 1, MaxPerIPv4Net: 1, MaxPerIPv6Subnet: 1, MaxPerIPv6Net: 1, CrowdedRegistrations: 1, CrowdedShare: 1}
	for i := range 5 {
		if _, err := s.Register(ctx, regFrom("ns", pid(i), ""), limits, epoch); err != nil {
			t.Fatalf("registration %d without a source: %v", i+1, err)
		}
	}
	// They count in no prefix.
	if _, err := s.Register(ctx, regFrom("ns", pid(9), "0.0.0.0"), limits, epoch); err != nil {
		t.Fatal(err)
	}
}

// testSourceQuotaConcurrent: registrations racing from one source get no
// more than the quota.
func testSourceQuotaConcurrent(t *testing.T, s store.Store) {
	const quota, tries = 7, 40
	ctx := context.Background()
	limits := store.Limits{MaxPerIPv6Net: quota}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for i := range tries {
		wg.Go(func() {
			src := fmt.Sprintf("2001:db8:5:%x::1", i)
			_, err := s.Register(ctx, regFrom(fmt.Sprintf("ns%d", i%3), pid(i), src), limits, epoch)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrQuota):
				refused++
			default:
				t.Errorf("registration %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if ok != quota || refused != tries-quota {
		t.Fatalf("%d accepted and %d refused, want %d and %d", ok, refused, quota, tries-quota)
	}
	st, err := s.Stats(ctx, epoch)
	if err != nil || st.Registrations != quota {
		t.Fatalf("stats %+v, %v: want %d registrations", st, err, quota)
	}
}

// testCrowded: once the store holds CrowdedRegistrations, a network holding
// its share gets no new registration; smaller ones, and refreshes, still do.
func testCrowded(t *testing.T, s store.Store) {
	ctx := context.Background()
	limits := store.Limits{MaxRegistrations: 10, CrowdedRegistrations: 6, CrowdedShare: 3}
	big, small := "198.51.100.%d", "203.0.113.%d"
	for i := range 4 { // below the threshold, any source registers
		if _, err := s.Register(ctx, regFrom("ns", pid(i), fmt.Sprintf(big, i)), limits, epoch); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if _, err := s.Register(ctx, regFrom("ns", pid(10+i), fmt.Sprintf(small, i)), limits, epoch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Register(ctx, regFrom("ns", pid(4), fmt.Sprintf(big, 4)), limits, epoch); !errors.Is(err, store.ErrCrowded) {
		t.Fatalf("new registration of a large source when crowded: %v, want ErrCrowded", err)
	}
	if _, err := s.Register(ctx, regFrom("ns", pid(12), fmt.Sprintf(small, 2)), limits, epoch); err != nil {
		t.Fatalf("new registration of a small source when crowded: %v", err)
	}
	if _, err := s.Register(ctx, regFrom("ns", pid(20), "2001:db8::1"), limits, epoch); err != nil {
		t.Fatalf("new registration of a new source when crowded: %v", err)
	}
	if _, err := s.Register(ctx, regFrom("ns", pid(0), fmt.Sprintf(big, 0)), limits, epoch); err != nil {
		t.Fatalf("refresh of a large source when crowded: %v", err)
	}
	// The small source now holds its share too.
	if _, err := s.Register(ctx, regFrom("ns", pid(13), fmt.Sprintf(small, 3)), limits, epoch); !errors.Is(err, store.ErrCrowded) {
		t.Fatalf("small source at its share: %v, want ErrCrowded", err)
	}
	// Below the threshold again (expired), the large source registers.
	later := epoch.Add(2 * time.Hour)
	if _, err := s.Register(ctx, regFrom("ns", pid(4), fmt.Sprintf(big, 4)), limits, later); err != nil {
		t.Fatalf("after everything expired: %v", err)
	}
}

// testCrowdedNamespaces: once the store holds CrowdedNamespaces, a network
// holding its share opens no new namespace, but joins existing ones.
func testCrowdedNamespaces(t *testing.T, s store.Store) {
	ctx := context.Background()
	limits := store.Limits{CrowdedNamespaces: 2, CrowdedShare: 1}
	if _, err := s.Register(ctx, regFrom("a", pid(1), "192.0.2.1"), limits, epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, regFrom("b", pid(2), "198.51.100.1"), limits, epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, regFrom("c", pid(3), "192.0.2.7"), limits, epoch); !errors.Is(err, store.ErrCrowded) {
		t.Fatalf("new namespace from a source holding its share: %v, want ErrCrowded", err)
	}
	if _, err := s.Register(ctx, regFrom("b", pid(3), "192.0.2.7"), limits, epoch); err != nil {
		t.Fatalf("existing namespace from a source holding its share: %v", err)
	}
	if _, err := s.Register(ctx, regFrom("c", pid(4), "203.0.113.1"), limits, epoch); err != nil {
		t.Fatalf("new namespace from a new source: %v", err)
	}
}

// testRefreshWhenFull: a point at every limit at once still refreshes what
// it holds.
func testRefreshWhenFull(t *testing.T, s store.Store) {
	ctx := context.Background()
	limits := store.Limits{
		MaxRegistrationsPerPeer: 2, MaxRegistrations: 4, MaxNamespaces: 2,
		MaxPerIPv4Address: 2, MaxPerIPv4Net: 2, CrowdedRegistrations: 1, CrowdedNamespaces: 1, CrowdedShare: 1,
	}
	regs := []store.Registration{
		regFrom("a", pid(1), "192.0.2.1"), regFrom("b", pid(1), "192.0.2.1"),
		regFrom("a", pid(2), "198.51.100.1"), regFrom("b", pid(2), "198.51.100.1"),
	}
	for _, r := range regs {
		mustRegister(t, s, r)
	}
	if _, err := s.Register(ctx, regFrom("a", pid(3), "203.0.113.1"), limits, epoch); !errors.Is(err, store.ErrFull) {
		t.Fatalf("new registration when full: %v, want ErrFull", err)
	}
	for round := range 3 {
		for _, r := range regs {
			r.Expires = epoch.Add(time.Duration(2+round) * time.Hour)
			if _, err := s.Register(ctx, r, limits, epoch.Add(time.Duration(round)*time.Second)); err != nil {
				t.Fatalf("refresh %d of %s/%s when full: %v", round, r.Namespace, r.Peer, err)
			}
		}
	}
}
