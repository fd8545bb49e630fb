package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/internal/passes"
	"github.com/rendezvous-p2p/rendezvous/store/postgres"
	"github.com/rendezvous-p2p/rendezvous/store/storetest"
)

const dsnEnv = "RENDEZVOUS_TEST_POSTGRES_DSN"

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		t.Skipf("%s is not set: skipping PostgreSQL tests (e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", dsnEnv, dsnEnv)
	}
	return dsn
}

// newSchema creates a schema of its own for one test and drops it at the
// end.
func newSchema(t testing.TB) (dsn, schema string) {
	t.Helper()
	dsn = testDSN(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema = "rz_test_" + hex.EncodeToString(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsnEnv, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropSchema(dsn, schema) })
	return dsn, schema
}

func dropSchema(dsn, schema string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
}

// beginTx begins a transaction on a connection of its own to dsn, rolled
// back and closed at the end of the test if still open.
func beginTx(t testing.TB, dsn string) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(ctx) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	return tx
}

func inSchema(schema string) postgres.Option {
	return postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["search_path"] = schema
	})
}

func open(t testing.TB, dsn, schema string, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, append([]postgres.Option{inSchema(schema)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	testDSN(t)
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		dsn, schema := newSchema(t)
		return open(t, dsn, schema)
	})
}

func pid(i int) peer.ID { return peer.ID(fmt.Sprintf("peer-%08d", i)) }

func reg(ns string, p peer.ID, exp time.Time) store.Registration {
	return store.Registration{Namespace: ns, Peer: p, Record: []byte("record of " + string(p)), Expires: exp}
}

// TestTwoPoints has two stores, two pools as two points, share a schema: what
// one registers the other serves, and a cookie of one pages at the other.
func TestTwoPoints(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	a, b := open(t, dsn, schema), open(t, dsn, schema)
	ctx := context.Background()
	s1, err := a.Register(ctx, reg("ns", pid(1), epoch.Add(time.Hour)), store.Limits{}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	regs, err := b.Discover(ctx, nil, "ns", 0, 10, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || regs[0].Peer != pid(1) || regs[0].Seq != s1 {
		t.Fatalf("B discovers %v", regs)
	}
	s2, err := b.Register(ctx, reg("ns", pid(2), epoch.Add(time.Hour)), store.Limits{}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if s2 <= s1 {
		t.Fatalf("B's seq %d not above A's %d", s2, s1)
	}
	regs, err = b.Discover(ctx, nil, "ns", s1, 10, epoch) // A's seq as a cookie at B
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || regs[0].Peer != pid(2) {
		t.Fatalf("B from A's cookie: %v", regs)
	}
	if err := b.Unregister(ctx, "ns", pid(1)); err != nil {
		t.Fatal(err)
	}
	st, err := a.Stats(ctx, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if st != (store.Stats{Registrations: 1, Namespaces: 1}) {
		t.Fatalf("A's stats %+v", st)
	}
}

// TestLimitsAcrossPoints has goroutines of two points race to exceed the
// per-peer and total limits: the live counts never exceed them.
func TestLimitsAcrossPoints(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	stores := []*postgres.Store{open(t, dsn, schema), open(t, dsn, schema)}
	ctx := context.Background()
	const perPeer, total, peers = 5, 23, 8
	lim := store.Limits{MaxRegistrationsPerPeer: perPeer, MaxRegistrations: total}
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i, s := range stores {
		for g := range 4 {
			wg.Go(func() {
				for k := range 30 {
					p := pid((g + k) % peers)
					_, err := s.Register(ctx, reg(fmt.Sprintf("ns-%d-%d", i, k), p, epoch.Add(time.Hour)), lim, epoch)
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
		}
	}
	wg.Wait()
	checkLimitsHeld(t, stores, perPeer, total, ok.Load())
}

// TestPeerCapAcrossPoints: one peer, two points, many goroutines, fresh
// namespaces: exactly the cap is accepted.
func TestPeerCapAcrossPoints(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	stores := []*postgres.Store{open(t, dsn, schema), open(t, dsn, schema)}
	ctx := context.Background()
	const perPeer = 7
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i, s := range stores {
		for g := range 6 {
			wg.Go(func() {
				for k := range 10 {
					_, err := s.Register(ctx, reg(fmt.Sprintf("ns-%d-%d-%d", i, g, k), pid(1), epoch.Add(time.Hour)),
						store.Limits{MaxRegistrationsPerPeer: perPeer}, epoch)
					if err == nil {
						ok.Add(1)
					} else if !errors.Is(err, store.ErrPeerLimit) {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	st, err := stores[0].Stats(ctx, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != perPeer || st.Registrations != perPeer {
		t.Fatalf("accepted %d, stored %d, want %d", ok.Load(), st.Registrations, perPeer)
	}
}

// TestChainAcrossPoints has writers at four points (four pools) register
// and refresh while a reader follows the cookie chain, alternating between
// points: it must see every registration version exactly once, in
// increasing seq, with none skipped.
func TestChainAcrossPoints(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	var stores []*postgres.Store
	for range 4 {
		stores = append(stores, open(t, dsn, schema))
	}
	ctx := context.Background()
	const writersPer, perWriter = 3, 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[uint64]string{}
	for si, s := range stores {
		for w := range writersPer {
			wg.Go(func() {
				for i := range perWriter {
					// Every peer registers twice: the refresh moves it.
					p := pid(((si*writersPer+w)*perWriter + i) / 2)
					seq, err := s.Register(ctx, reg("ns", p, epoch.Add(time.Hour)), store.Limits{}, epoch)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked[seq] = string(p)
					mu.Unlock()
				}
			})
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := map[uint64]bool{}
	var after uint64
	poll := func(i int) int {
		regs, err := stores[i%len(stores)].Discover(ctx, nil, "ns", after, 5, epoch)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range regs {
			if r.Seq <= after {
				t.Fatalf("seq %d after cookie %d", r.Seq, after)
			}
			seen[r.Seq] = true
			after = r.Seq
		}
		return len(regs)
	}
	// Before each poll, note what was acknowledged beyond the cookie: after
	// it, what lies at or below the new cookie must have been returned,
	// unless a later version replaced it (checked at the end).
	var suspects []uint64
	for i := 0; ; i++ {
		select {
		case <-done:
		default:
			mu.Lock()
			var before []uint64
			for seq := range acked {
				if seq > after {
					before = append(before, seq)
				}
			}
			mu.Unlock()
			poll(i)
			for _, seq := range before {
				if seq <= after && !seen[seq] {
					suspects = append(suspects, seq)
				}
			}
			continue
		}
		break
	}
	for i := 0; poll(i) > 0; i++ {
	}
	// Every peer's last version must have been seen; no seq twice (map).
	last := map[string]uint64{}
	for seq, p := range acked {
		last[p] = max(last[p], seq)
	}
	for _, seq := range suspects {
		if p := acked[seq]; last[p] == seq {
			t.Errorf("%s: seq %d, acknowledged before a Discover, passed over", p, seq)
		}
	}
	for p, seq := range last {
		if !seen[seq] {
			t.Errorf("%s: last version seq %d never seen", p, seq)
		}
	}
	if len(last) != len(stores)*writersPer*perWriter/2 {
		t.Fatalf("%d peers", len(last))
	}
}

// TestUnreachable opens against a closed port: the error is ErrUnavailable,
// quickly.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	_, err = postgres.Open(context.Background(), "postgres://postgres@"+addr+"/x?sslmode=disable", postgres.WithOpTimeout(time.Second))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Open took %v", d)
	}
}

// proxy forwards TCP connections to the database; it can be cut.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
	blackhole    bool
}

func (p *proxy) start(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns[c] = true
			hole := p.blackhole
			p.mu.Unlock()
			if hole {
				continue // hold it, answer nothing
			}
			go func() {
				d, err := net.Dial("tcp", p.target)
				if err != nil {
					c.Close()
					return
				}
				p.mu.Lock()
				p.conns[d] = true
				p.mu.Unlock()
				go func() { _, _ = io.Copy(d, c); d.Close() }()
				_, _ = io.Copy(c, d)
				c.Close()
			}()
		}
	}()
}

// cut closes the listener and every connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// TestOutageAndRecovery cuts the database off: calls fail with
// ErrUnavailable within the op timeout, whether connections are refused or
// hang, and succeed again once the database is back, without reopening.
func TestOutageAndRecovery(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{addr: "127.0.0.1:0", target: net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))), conns: map[net.Conn]bool{}}
	px.start(t)
	t.Cleanup(px.cut)
	host, port, _ := net.SplitHostPort(px.addr)
	portN, _ := strconv.Atoi(port)
	const timeout = 700 * time.Millisecond
	s := open(t, dsn, schema, postgres.WithOpTimeout(timeout), postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["search_path"] = schema
		c.ConnConfig.Host, c.ConnConfig.Port, c.ConnConfig.Fallbacks = host, uint16(portN), nil
	}))
	ctx := context.Background()
	if _, err := s.Register(ctx, reg("ns", pid(1), epoch.Add(time.Hour)), store.Limits{}, epoch); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		start := time.Now()
		_, err := s.Register(ctx, reg("ns", pid(2), epoch.Add(time.Hour)), store.Limits{}, epoch)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("%s: Register: %v, want ErrUnavailable", what, err)
		}
		_, err = s.Discover(ctx, nil, "ns", 0, 10, epoch)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("%s: Discover: %v, want ErrUnavailable", what, err)
		}
		if d := time.Since(start); d > 2*timeout+time.Second {
			t.Fatalf("%s: two calls took %v", what, d)
		}
	}
	px.cut()
	check("refused")
	px.mu.Lock()
	px.blackhole = true
	px.mu.Unlock()
	px.start(t)
	check("hanging")
	px.cut()
	px.mu.Lock()
	px.blackhole = false
	px.mu.Unlock()
	px.start(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Register(ctx, reg("ns", pid(2), epoch.Add(time.Hour)), store.Limits{}, epoch)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	regs, err := s.Discover(ctx, nil, "ns", 0, 10, epoch)
	if err != nil || len(regs) != 2 {
		t.Fatalf("after recovery: %v %v", regs, err)
	}
}

// TestConcurrentOpenAndReopen starts several points at once on a fresh
// schema (the migrations must not race), then reopens: the sequence goes
// on, even when its greatest registration was removed.
func TestConcurrentOpenAndReopen(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	var wg sync.WaitGroup
	stores := make([]*postgres.Store, 4)
	for i := range stores {
		wg.Go(func() {
			s, err := postgres.Open(context.Background(), dsn, inSchema(schema))
			if err != nil {
				t.Error(err)
				return
			}
			stores[i] = s
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ctx := context.Background()
	last, err := stores[0].Register(ctx, reg("ns", pid(1), epoch.Add(time.Hour)), store.Limits{}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if err := stores[1].Unregister(ctx, "ns", pid(1)); err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		s.Close()
	}
	s := open(t, dsn, schema)
	seq, err := s.Register(ctx, reg("ns", pid(2), epoch.Add(time.Hour)), store.Limits{}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if seq <= last {
		t.Fatalf("seq %d after reopening, want one above %d", seq, last)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+schema+".rendezvous_schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("%d migrations recorded, want 3", n)
	}
}

// TestSweeper checks that the background sweeper removes expired rows and
// keeps the counters right.
func TestSweeper(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	swept := passes.New()
	s := open(t, dsn, schema, postgres.WithSweepInterval(30*time.Millisecond), postgres.WithSweepBatch(7), postgres.WithSweepDone(swept.Done))
	ctx := context.Background()
	for i := range 60 {
		ttl := time.Minute
		if i%2 == 0 {
			ttl = time.Hour
		}
		if _, err := s.Register(ctx, reg(fmt.Sprintf("ns%d", i%5), pid(i), epoch.Add(ttl)), store.Limits{}, epoch); err != nil {
			t.Fatal(err)
		}
	}
	// Let the sweeper see a later now; the second pass finished after this
	// began after it, and sweeps in batches until nothing expired is left.
	if _, err := s.Discover(ctx, nil, "ns0", 0, 1, epoch.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	swept.WaitFor(t, swept.Count()+2, 10*time.Second)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, total, nss int
	if err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s.rendezvous_registrations), sum(total), sum(namespaces)
		FROM %[1]s.rendezvous_counters`, schema)).Scan(&n, &total, &nss); err != nil {
		t.Fatal(err)
	}
	if n != 30 || total != 30 || nss != 5 {
		t.Fatalf("rows %d, counters %d %d; want the 30 unexpired in 5 namespaces", n, total, nss)
	}
}

// Benchmarks.

func benchNS(i int) string { return fmt.Sprintf("namespace-%04d", i) }

// nsCount is the number of namespaces of a benchmark store of n: 1000
// registrations in each, so that a page of 100 is there at every size.
func nsCount(n int) int { return max(n/1000, 1) }

// benchSizes are the sizes of the benchmark stores: 10^3 alone with
// -short (CI runs the benchmarks once that way, for correctness).
func benchSizes() []int {
	if testing.Short() {
		return []int{1000}
	}
	sizes := []int{1000, 100000}
	if os.Getenv("RENDEZVOUS_BENCH_LARGE") == "1" {
		sizes = append(sizes, 1000000)
	}
	return sizes
}

type populatedSchema struct {
	schema string
	seq0   uint64
}

var (
	benchDSN     string
	benchSchemas = map[string]populatedSchema{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, p := range benchSchemas {
		dropSchema(benchDSN, p.schema)
	}
	os.Exit(code)
}

// populated returns a schema holding n registrations, 1000 per namespace,
// loaded with COPY, made once per size and purpose (the register benchmarks
// add to theirs).
func populated(b *testing.B, n int, purpose string) populatedSchema {
	key := fmt.Sprint(purpose, n)
	if p, ok := benchSchemas[key]; ok {
		return p
	}
	dsn := testDSN(b)
	benchDSN = dsn
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	schema := fmt.Sprintf("rz_bench_%d_%d", n, mrand.Int32())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		b.Fatal(err)
	}
	benchSchemas[key] = populatedSchema{schema: schema}
	s, err := postgres.Open(ctx, dsn, inSchema(schema), postgres.WithSweepInterval(0))
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	if _, err := conn.Exec(ctx, "SET search_path = "+schema); err != nil {
		b.Fatal(err)
	}
	var seq0 int64
	if err := conn.QueryRow(ctx, `SELECT seq FROM rendezvous_counters WHERE id = 1`).Scan(&seq0); err != nil {
		b.Fatal(err)
	}
	record := make([]byte, 200)
	exp := epoch.Add(24 * time.Hour).UnixNano()
	i := 0
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"rendezvous_registrations"}, []string{"ns", "peer", "record", "expires", "seq"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			row := []any{[]byte(benchNS(i % nsCount(n))), []byte(pid(i)), record, exp, seq0 + int64(i) + 1}
			i++
			return row, nil
		}))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO rendezvous_namespaces (ns) SELECT DISTINCT ns FROM rendezvous_registrations`); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE rendezvous_counters SET seq = $1, total = $2, namespaces = $3 WHERE id = 1`, seq0+int64(n), n, nsCount(n)); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE rendezvous_registrations`); err != nil {
		b.Fatal(err)
	}
	p := populatedSchema{schema: schema, seq0: uint64(seq0)}
	benchSchemas[key] = p
	return p
}

// BenchmarkRegister registers new peers one at a time, and from 16
// goroutines (applied in batches: see BenchmarkRegisterConcurrent).
func BenchmarkRegister(b *testing.B) {
	ctx := context.Background()
	record := make([]byte, 200)
	lim := store.Limits{MaxRegistrationsPerPeer: 1000, MaxRegistrations: 10_000_000}
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			p := populated(b, n, "register")
			s := open(b, testDSN(b), p.schema, postgres.WithSweepInterval(0))
			for i := 0; b.Loop(); i++ {
				r := store.Registration{Namespace: benchNS(i % nsCount(n)), Peer: peer.ID(fmt.Sprintf("new-%d", mrand.Int64())), Record: record, Expires: epoch.Add(time.Hour)}
				if _, err := s.Register(ctx, r, lim, epoch); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("size=%d/parallel", n), func(b *testing.B) {
			p := populated(b, n, "register")
			s := open(b, testDSN(b), p.schema, postgres.WithSweepInterval(0))
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					r := store.Registration{Namespace: benchNS(i % nsCount(n)), Peer: peer.ID(fmt.Sprintf("new-%d", mrand.Int64())), Record: record, Expires: epoch.Add(time.Hour)}
					if _, err := s.Register(ctx, r, lim, epoch); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkDiscover100 discovers a page of 100 in one namespace from a
// random cookie position.
func BenchmarkDiscover100(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			p := populated(b, n, "discover")
			s := open(b, testDSN(b), p.schema, postgres.WithSweepInterval(0))
			for b.Loop() {
				// Namespace 0 holds registrations 0, k, 2k...: start
				// where 100 of them remain.
				j := mrand.IntN(900)
				regs, err := s.Discover(ctx, nil, benchNS(0), p.seq0+uint64(j*nsCount(n)), 100, epoch)
				if err != nil {
					b.Fatal(err)
				}
				if len(regs) != 100 {
					b.Fatalf("page of %d", len(regs))
				}
			}
			// After the loop: ResetTimer and the first b.Loop drop metrics.
			b.ReportMetric(float64(schemaBytes(b, p.schema)), "pg-bytes")
		})
	}
}

// schemaBytes is the size on disk of the tables of schema, indexes and
// TOAST included (pg_total_relation_size).
func schemaBytes(b *testing.B, schema string) int64 {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var size int64
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'r'`, schema).Scan(&size)
	if err != nil {
		b.Fatal(err)
	}
	return size
}

// BenchmarkReopen measures the time a point on PostgreSQL takes to serve
// after a restart: Open (pool, migration check) and the first Discover.
func BenchmarkReopen(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			p := populated(b, n, "discover")
			dsn := testDSN(b)
			for b.Loop() {
				s, err := postgres.Open(ctx, dsn, inSchema(p.schema), postgres.WithSweepInterval(0))
				if err != nil {
					b.Fatal(err)
				}
				regs, err := s.Discover(ctx, nil, benchNS(0), 0, 100, epoch)
				if err != nil || len(regs) == 0 {
					b.Fatal(err, len(regs))
				}
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
		})
	}
}

// TestSourceQuotaAcrossPoints: registrations from one /24 at two points,
// many goroutines, fresh peers: exactly the quota is accepted.
func TestSourceQuotaAcrossPoints(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	stores := []*postgres.Store{open(t, dsn, schema), open(t, dsn, schema)}
	ctx := context.Background()
	const quota = 9
	lim := store.Limits{MaxPerIPv4Net: quota, MaxPerIPv4Address: 1000}
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i, s := range stores {
		for g := range 6 {
			wg.Go(func() {
				for k := range 5 {
					r := reg(fmt.Sprintf("ns-%d", k), pid(i*100+g*10+k), epoch.Add(time.Hour))
					r.Source = netip.AddrFrom4([4]byte{198, 51, 100, byte(i*100 + g*10 + k)})
					_, err := s.Register(ctx, r, lim, epoch)
					if err == nil {
						ok.Add(1)
					} else if !errors.Is(err, store.ErrQuota) {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	st, err := stores[1].Stats(ctx, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != quota || st.Registrations != quota {
		t.Fatalf("accepted %d, stored %d, want %d", ok.Load(), st.Registrations, quota)
	}
}

// TestMigratesVersion1: a schema of version 1 is migrated at Open; its
// registrations are served and refreshed and count in no source's quota.
func TestMigratesVersion1(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`CREATE TABLE rendezvous_schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
		`INSERT INTO rendezvous_schema_migrations (version) VALUES (1)`,
		`CREATE TABLE rendezvous_registrations (ns bytea NOT NULL, peer bytea NOT NULL, record bytea NOT NULL,
			expires bigint NOT NULL, seq bigint NOT NULL, PRIMARY KEY (ns, peer))`,
		`CREATE UNIQUE INDEX rendezvous_registrations_seq ON rendezvous_registrations (seq)`,
		`CREATE INDEX rendezvous_registrations_ns_seq ON rendezvous_registrations (ns, seq)`,
		`CREATE INDEX rendezvous_registrations_peer_expires ON rendezvous_registrations (peer, expires)`,
		`CREATE INDEX rendezvous_registrations_expires ON rendezvous_registrations (expires)`,
		`CREATE TABLE rendezvous_namespaces (ns bytea PRIMARY KEY, n bigint NOT NULL)`,
		`CREATE TABLE rendezvous_counters (id integer PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL,
			total bigint NOT NULL, namespaces bigint NOT NULL)`,
		`INSERT INTO rendezvous_counters VALUES (1, 100, 1, 1)`,
		`INSERT INTO rendezvous_namespaces VALUES ('ns', 1)`,
	} {
		if _, err := conn.Exec(ctx, "SET search_path = "+schema+"; "+q); err != nil {
			t.Fatal(q, err)
		}
	}
	if _, err := conn.Exec(ctx, "INSERT INTO "+schema+".rendezvous_registrations VALUES ('ns', $1, 'old record', $2, 100)",
		[]byte(pid(1)), epoch.Add(time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	s := open(t, dsn, schema)
	regs, err := s.Discover(ctx, nil, "ns", 0, 10, epoch)
	if err != nil || len(regs) != 1 || regs[0].Peer != pid(1) || string(regs[0].Record) != "old record" || regs[0].Seq != 100 {
		t.Fatalf("after migrating: %v, %v; want the registration of version 1", regs, err)
	}
	limits := store.Limits{MaxPerIPv4Address: 1}
	src := netip.MustParseAddr("192.0.2.1")
	r := reg("ns", pid(2), epoch.Add(time.Hour))
	r.Source = src
	if seq, err := s.Register(ctx, r, limits, epoch); err != nil || seq <= 100 {
		t.Fatalf("registering from a source: seq %d, %v; want one above 100", seq, err)
	}
	r = reg("ns", pid(1), epoch.Add(2*time.Hour))
	r.Source = src
	if _, err := s.Register(ctx, r, limits, epoch); err != nil {
		t.Fatalf("refreshing the old registration from a full source: %v", err)
	}
	r = reg("other", pid(3), epoch.Add(time.Hour))
	r.Source = src
	if _, err := s.Register(ctx, r, limits, epoch); !errors.Is(err, store.ErrQuota) {
		t.Fatalf("a third from the source: %v, want ErrQuota", err)
	}
	var stored []byte
	if err := conn.QueryRow(ctx, "SELECT src FROM "+schema+".rendezvous_registrations WHERE peer = $1", []byte(pid(2))).Scan(&stored); err != nil || !slices.Equal(stored, src.AsSlice()) {
		t.Fatalf("stored source %v, %v; want %v", stored, err, src)
	}
}
