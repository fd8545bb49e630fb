package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/internal/passes"
	"github.com/rendezvous-p2p/rendezvous/store/sqlite"
	"github.com/rendezvous-p2p/rendezvous/store/storetest"
)

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func open(t testing.TB, path string, opts ...sqlite.Option) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "sub", "dir", "rz.db"))
	})
}

func TestConformanceNoGroupCommit(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "rz.db"), sqlite.WithMaxBatch(1), sqlite.WithSynchronous("NORMAL"))
	})
}

func pid(i int) peer.ID { return peer.ID(fmt.Sprintf("peer-%08d", i)) }

func reg(ns string, p peer.ID, exp time.Time) store.Registration {
	return store.Registration{Namespace: ns, Peer: p, Record: []byte("record of " + string(p)), Expires: exp}
}

// TestReopenKeepsEverything closes and reopens the file: the registrations
// are all there and the sequence continues from a cookie taken before,
// without repeats, even when the last registration was removed. Where every
// commit is synced before it is seen (SQLite syncs) it continues without a
// gap; where the writer syncs after the commit, past the numbers reserved.
func TestReopenKeepsEverything(t *testing.T) {
	for _, writerSync := range []bool{true, false} {
		t.Run(fmt.Sprintf("writer-sync=%v", writerSync), func(t *testing.T) {
			testReopenKeepsEverything(t, sqlite.WithWriterSync(writerSync))
		})
	}
}

func testReopenKeepsEverything(t *testing.T, opts ...sqlite.Option) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rz.db")
	s := open(t, path, opts...)
	var last uint64
	for i := range 50 {
		seq, err := s.Register(ctx, reg(fmt.Sprintf("ns%d", i%3), pid(i), epoch.Add(time.Hour)), store.Limits{}, epoch)
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	// Remove the greatest: a restarted store must not hand out its seq again.
	if err := s.Unregister(ctx, "ns1", pid(49)); err != nil {
		t.Fatal(err)
	}
	before, err := s.Discover(ctx, nil, "", 0, 100, epoch)
	if err != nil {
		t.Fatal(err)
	}
	cookie := before[len(before)-1].Seq
	want := last + 1
	if s.WriterSync() {
		limit, err := sqlite.SeqLimit(s)
		if err != nil {
			t.Fatal(err)
		}
		want = uint64(limit) + 1
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, reg("x", pid(1), epoch.Add(time.Hour)), store.Limits{}, epoch); err == nil {
		t.Fatal("Register after Close succeeded")
	}

	s = open(t, path, opts...)
	defer s.Close()
	after, err := s.Discover(ctx, nil, "", 0, 100, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("after reopening:\n%v\nwant\n%v", after, before)
	}
	st, err := s.Stats(ctx, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if st != (store.Stats{Registrations: 49, Namespaces: 3}) {
		t.Fatalf("stats %+v", st)
	}
	seq, err := s.Register(ctx, reg("ns0", pid(100), epoch.Add(time.Hour)), store.Limits{}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if seq <= last || seq != want {
		t.Fatalf("first seq after reopening %d, want %d (the last before: %d)", seq, want, last)
	}
	regs, err := s.Discover(ctx, nil, "", cookie, 100, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || regs[0].Peer != pid(100) || regs[0].Seq != seq {
		t.Fatalf("from the old cookie: %v", regs)
	}
}

// TestGroupCommitLimits has many goroutines register at once, so that the
// writer batches them: the per-peer and total limits still hold exactly.
func TestGroupCommitLimits(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rz.db"), sqlite.WithSynchronous("NORMAL"))
	defer s.Close()
	lim := store.Limits{MaxRegistrationsPerPeer: 3, MaxRegistrations: 40}
	var wg sync.WaitGroup
	var seqs seqSet
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				seq, err := s.Register(ctx, reg(fmt.Sprintf("ns%d", i), pid(g), epoch.Add(time.Hour)), lim, epoch)
				if err != nil {
					continue
				}
				seqs.add(t, seq)
			}
		})
	}
	wg.Wait()
	st, err := s.Stats(ctx, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if st.Registrations != 40 {
		t.Fatalf("%d registrations, want the total cap 40", st.Registrations)
	}
	for g := range 16 {
		var n int
		regs, _ := s.Discover(ctx, nil, "", 0, 1000, epoch)
		for _, r := range regs {
			if r.Peer == pid(g) {
				n++
			}
		}
		if n > 3 {
			t.Fatalf("peer %d has %d registrations", g, n)
		}
	}
}

// TestSweeper checks that the background sweeper removes expired rows and
// keeps the counters right.
func TestSweeper(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rz.db")
	swept := passes.New()
	s := open(t, path, sqlite.WithSweepInterval(20*time.Millisecond), sqlite.WithSweepBatch(7), sqlite.WithSweepDone(swept.Done))
	defer s.Close()
	for i := range 100 {
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
	swept.WaitFor(t, swept.Count()+2, 5*time.Second)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, total, nss int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM regs), total, namespaces FROM meta`).Scan(&n, &total, &nss); err != nil {
		t.Fatal(err)
	}
	if n != 50 || total != 50 || nss != 5 {
		t.Fatalf("rows %d, counters %d %d; want the 50 unexpired in 5 namespaces", n, total, nss)
	}
}

// TestQueryPlans checks that Discover and the limit checks use the indexes.
func TestQueryPlans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rz.db")
	s := open(t, path)
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for q, want := range map[string]string{
		`SELECT seq, peer, record, expires FROM regs INDEXED BY regs_ns_seq WHERE ns = ? AND seq > ? AND +expires > ? ORDER BY seq LIMIT ?`: "regs_ns_seq (ns=? AND seq>?)",
		`SELECT seq, ns, peer, record, expires FROM regs INDEXED BY regs_seq WHERE seq > ? AND +expires > ? ORDER BY seq LIMIT ?`:           "regs_seq (seq>?)",
		`SELECT count(*) FROM regs WHERE peer = ?`:                                                                "COVERING INDEX regs_peer (peer=?)",
		`SELECT expires FROM regs WHERE ns = ? AND peer = ?`:                                                      "regs_key (ns=? AND peer=?)",
		`SELECT id FROM regs WHERE expires <= ? ORDER BY expires LIMIT ?`:                                         "regs_expires (expires<?)",
		`SELECT count(*) FROM regs WHERE src_addr = ?`:                                                            "COVERING INDEX regs_src_addr (src_addr=?)",
		`SELECT count(*) FROM regs WHERE src_net = ?`:                                                             "COVERING INDEX regs_src_net (src_net=?)",
		`UPDATE regs SET seq = ?, record = ?, expires = ? WHERE ns = ? AND peer = ? AND expires > ? AND src IS ?`: "regs_key (ns=? AND peer=?)",
	} {
		rows, err := db.Query("EXPLAIN QUERY PLAN "+q, "a", 1, 2, 3, 4, 5, 6)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		got := strings.Join(plan, "; ")
		if !strings.Contains(got, want) || strings.Contains(got, "TEMP B-TREE") {
			t.Errorf("%s:\nplan %s\nwant %s", q, got, want)
		}
	}
}

// populate fills path with n registrations, 1000 per namespace, in one
// transaction, bypassing the store, then opens the store on it.
func populate(b *testing.B, path string, n int) {
	b.Helper()
	s := open(b, path, sqlite.WithSynchronous("NORMAL"))
	s.Close()
	db, err := sql.Open("sqlite", path+"?_journal_mode=WAL&_synchronous=OFF")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	var seq0 int64
	if err := tx.QueryRow(`SELECT seq FROM meta`).Scan(&seq0); err != nil {
		b.Fatal(err)
	}
	ins, err := tx.Prepare(`INSERT INTO regs (seq, ns, peer, record, expires) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	record := make([]byte, 200)
	exp := epoch.Add(24 * time.Hour).UnixNano()
	for i := range n {
		if _, err := ins.Exec(seq0+int64(i)+1, benchNS(i%nsCount(n)), []byte(pid(i)), record, exp); err != nil {
			b.Fatal(err)
		}
	}
	for i := range nsCount(n) {
		if _, err := tx.Exec(`INSERT INTO namespaces (ns, n) VALUES (?, ?)`, benchNS(i), (n-i+nsCount(n)-1)/nsCount(n)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := tx.Exec(`UPDATE meta SET seq = ?, total = ?, namespaces = ?`, seq0+int64(n), n, nsCount(n)); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

func benchNS(i int) string { return fmt.Sprintf("namespace-%04d", i) }

// nsCount is the number of namespaces of a benchmark store of n: 1000
// registrations in each, so that a page of 100 is there at every size.
func nsCount(n int) int { return max(n/1000, 1) }

// benchSizes are the sizes of the benchmark stores: 10^3 alone with
// -short (CI runs the benchmarks once that way, for correctness).
func benchSizes(b *testing.B) []int {
	if testing.Short() {
		return []int{1000}
	}
	sizes := []int{1000, 100000}
	if os.Getenv("RENDEZVOUS_BENCH_LARGE") == "1" {
		sizes = append(sizes, 1000000)
	}
	return sizes
}

// cache keeps a populated file per size across sub-benchmark runs.
var cache = map[int]string{}

func populated(b *testing.B, n int) string {
	if p, ok := cache[n]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "rz-bench")
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(dir, "rz.db")
	populate(b, p, n)
	cache[n] = p
	return p
}

// fresh copies the populated file of size n for a benchmark that writes.
func fresh(b *testing.B, n int) string {
	src, err := os.ReadFile(populated(b, n))
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(b.TempDir(), "rz.db")
	if err := os.WriteFile(p, src, 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, p := range cache {
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}

// BenchmarkRegister registers new peers one at a time (synchronous=FULL),
// and in parallel (group commit).
func BenchmarkRegister(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchSizes(b) {
		for _, m := range benchMmaps(b) {
			b.Run(fmt.Sprintf("size=%d%s", n, m.name), func(b *testing.B) {
				s := open(b, fresh(b, n), sqlite.WithSweepInterval(0), sqlite.WithMmapSize(m.bytes))
				defer s.Close()
				record := make([]byte, 200)
				for i := 0; b.Loop(); i++ {
					r := store.Registration{Namespace: benchNS(i % nsCount(n)), Peer: peer.ID(fmt.Sprintf("new-%d-%d", n, rand.Int64())), Record: record, Expires: epoch.Add(time.Hour)}
					if _, err := s.Register(ctx, r, store.Limits{MaxRegistrationsPerPeer: 1000, MaxRegistrations: 10_000_000}, epoch); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(fmt.Sprintf("size=%d/parallel", n), func(b *testing.B) {
			s := open(b, fresh(b, n), sqlite.WithSweepInterval(0))
			defer s.Close()
			record := make([]byte, 200)
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					r := store.Registration{Namespace: benchNS(i % nsCount(n)), Peer: peer.ID(fmt.Sprintf("new-%d-%d", n, rand.Int64())), Record: record, Expires: epoch.Add(time.Hour)}
					if _, err := s.Register(ctx, r, store.Limits{MaxRegistrationsPerPeer: 1000, MaxRegistrations: 10_000_000}, epoch); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkRefresh/parallel refreshes live registrations from 16
// goroutines per core, each its own peer in 10 namespaces: the REGISTERs
// a point mostly receives, which `rendezvous bench --workload register`
// makes.
func BenchmarkRefresh(b *testing.B) {
	ctx := context.Background()
	s := open(b, fresh(b, 1000), sqlite.WithSweepInterval(0))
	defer s.Close()
	record := make([]byte, 200)
	var next atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p := peer.ID(fmt.Sprintf("refresh-%d", next.Add(1)))
		for i := 0; pb.Next(); i++ {
			r := store.Registration{Namespace: benchNS(i % 10), Peer: p, Record: record, Expires: epoch.Add(time.Hour)}
			if _, err := s.Register(ctx, r, store.Limits{MaxRegistrationsPerPeer: 1000, MaxRegistrations: 10_000_000}, epoch); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRefreshSync refreshes one live registration at a time, so each
// is a commit of its own, under synchronous FULL (the commit synced to disk
// before Register returns; by the writer, and by SQLite) and NORMAL (synced
// later): the difference is what a sync costs on this machine.
func BenchmarkRefreshSync(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		name, mode string
		writerSync bool
	}{{"full", "FULL", true}, {"full-sqlite", "FULL", false}, {"normal", "NORMAL", true}} {
		b.Run("sync="+c.name, func(b *testing.B) {
			s := open(b, fresh(b, 1000), sqlite.WithSweepInterval(0), sqlite.WithSynchronous(c.mode), sqlite.WithWriterSync(c.writerSync))
			defer s.Close()
			r := store.Registration{Namespace: benchNS(0), Peer: "refresh-sync", Record: make([]byte, 200), Expires: epoch.Add(time.Hour)}
			for b.Loop() {
				if _, err := s.Register(ctx, r, store.Limits{MaxRegistrationsPerPeer: 1000, MaxRegistrations: 10_000_000}, epoch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDiscover100 discovers a page of 100 in one namespace from a
// random cookie position.
func BenchmarkDiscover100(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchSizes(b) {
		for _, m := range benchMmaps(b) {
			for _, spread := range []bool{false, true} {
				name := fmt.Sprintf("size=%d%s", n, m.name)
				if spread {
					name += "/spread"
				}
				b.Run(name, func(b *testing.B) {
					s := open(b, populated(b, n), sqlite.WithSweepInterval(0), sqlite.WithMmapSize(m.bytes))
					defer s.Close()
					first, err := s.Discover(ctx, nil, "", 0, 1, epoch)
					if err != nil || len(first) == 0 {
						b.Fatal(err)
					}
					seq0 := first[0].Seq - 1
					for b.Loop() {
						// Namespace k holds registrations k, k+K, k+2K...
						// (K namespaces): start where 100 of them remain.
						ns := 0
						if spread {
							ns = rand.IntN(nsCount(n))
						}
						j := rand.IntN(900)
						regs, err := s.Discover(ctx, nil, benchNS(ns), seq0+uint64(j*nsCount(n)), 100, epoch)
						if err != nil {
							b.Fatal(err)
						}
						if len(regs) != 100 {
							b.Fatalf("page of %d", len(regs))
						}
					}
					// After the loop: ResetTimer and the first b.Loop drop metrics.
					b.ReportMetric(float64(fileBytes(b, populated(b, n))), "db-bytes")
				})
			}
		}
	}
}

// benchMmap is a PRAGMA mmap_size the benchmarks run with, and the suffix
// of their names.
type benchMmap struct {
	name  string
	bytes int64
}

// benchMmaps are the store's default map and, with RENDEZVOUS_BENCH_MMAP=1,
// no map (name "/mmap=0") and a 1 GiB one ("/mmap=1GiB").
func benchMmaps(b *testing.B) []benchMmap {
	if os.Getenv("RENDEZVOUS_BENCH_MMAP") != "1" {
		return []benchMmap{{"", sqlite.DefaultMmapSize}}
	}
	return []benchMmap{{"/mmap=0", 0}, {"/mmap=1GiB", 1 << 30}}
}

// fileBytes is the size of the database at p with its WAL and shared-memory
// files.
func fileBytes(b *testing.B, p string) int64 {
	var total int64
	for _, suffix := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(p + suffix)
		if err == nil {
			total += fi.Size()
		} else if suffix == "" {
			b.Fatal(err)
		}
	}
	return total
}

// BenchmarkReopen measures the time from Open to the first Discover served,
// on a store of each size.
func BenchmarkReopen(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchSizes(b) {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			p := populated(b, n)
			for b.Loop() {
				s := open(b, p, sqlite.WithSweepInterval(0))
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

// TestTwoStoresOneFile has two stores, as two processes would, write to one
// file at once: sequence numbers stay unique, each store's grow, and the
// total limit holds across both.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rz.db")
	a := open(t, path, sqlite.WithSynchronous("NORMAL"))
	defer a.Close()
	b := open(t, path, sqlite.WithSynchronous("NORMAL"))
	defer b.Close()
	var wg sync.WaitGroup
	var seqs seqSet
	for i, s := range []*sqlite.Store{a, b, a, b} {
		wg.Go(func() {
			var last uint64
			for k := range 50 {
				seq, err := s.Register(ctx, reg("ns", pid(i*100+k), epoch.Add(time.Hour)), store.Limits{MaxRegistrations: 150}, epoch)
				if errors.Is(err, store.ErrFull) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if seq <= last {
					t.Errorf("seq %d after %d", seq, last)
				}
				last = seq
				seqs.add(t, seq)
			}
		})
	}
	wg.Wait()
	st, err := b.Stats(ctx, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if st.Registrations != 150 || seqs.len() != 150 {
		t.Fatalf("stats %+v, %d accepted, want the limit 150", st, seqs.len())
	}
}

// seqSet records sequence numbers handed out concurrently and reports any
// handed out twice.
type seqSet struct {
	mu   sync.Mutex
	seen map[uint64]bool
}

func (s *seqSet) add(t *testing.T, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[uint64]bool{}
	}
	if s.seen[seq] {
		t.Errorf("seq %d twice", seq)
	}
	s.seen[seq] = true
}

func (s *seqSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// version1 is the schema of version 1 (PRAGMA user_version 1), before
// registrations kept their source.
var version1 = []string{
	`CREATE TABLE regs (seq INTEGER PRIMARY KEY, ns TEXT NOT NULL, peer BLOB NOT NULL, record BLOB NOT NULL, expires INTEGER NOT NULL)`,
	`CREATE UNIQUE INDEX regs_key ON regs (ns, peer)`,
	`CREATE INDEX regs_ns_seq ON regs (ns, seq)`,
	`CREATE INDEX regs_peer_expires ON regs (peer, expires)`,
	`CREATE INDEX regs_expires ON regs (expires)`,
	`CREATE TABLE namespaces (ns TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID`,
	`CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, total INTEGER NOT NULL, namespaces INTEGER NOT NULL)`,
	`INSERT INTO meta (id, seq, total, namespaces) VALUES (1, 100, 1, 1)`,
	`INSERT INTO namespaces (ns, n) VALUES ('ns', 1)`,
	`PRAGMA user_version = 1`,
}

// TestMigratesVersion1: a database of version 1 opens; its registrations
// are served and refreshed, count in no source's quota, and the sequence
// goes on.
func TestMigratesVersion1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rz.db")
	db, err := sql.Open("sqlite", path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range version1 {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	if _, err := db.Exec(`INSERT INTO regs (seq, ns, peer, record, expires) VALUES (100, 'ns', ?, 'old record', ?)`,
		[]byte(pid(1)), epoch.Add(time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := open(t, path)
	defer s.Close()
	regs, err := s.Discover(ctx, nil, "ns", 0, 10, epoch)
	if err != nil || len(regs) != 1 || regs[0].Peer != pid(1) || string(regs[0].Record) != "old record" || regs[0].Seq != 100 {
		t.Fatalf("after migrating: %v, %v; want the registration of version 1", regs, err)
	}
	limits := store.Limits{MaxPerIPv4Address: 1}
	src := netip.MustParseAddr("192.0.2.1")
	r := reg("ns", pid(2), epoch.Add(time.Hour))
	r.Source = src
	if seq, err := s.Register(ctx, r, limits, epoch); err != nil || seq != 101 {
		t.Fatalf("registering from a source: seq %d, %v; want 101", seq, err)
	}
	r = reg("ns", pid(1), epoch.Add(2*time.Hour))
	r.Source = src
	if _, err := s.Register(ctx, r, limits, epoch); err != nil {
		t.Fatalf("refreshing the old registration from a full source: %v", err)
	}
	r = reg("other", pid(3), epoch.Add(time.Hour))
	r.Source = src
	var qe *store.QuotaError
	if _, err := s.Register(ctx, r, limits, epoch); !errors.As(err, &qe) {
		t.Fatalf("a third from the source: %v, want a quota error", err)
	}
	s.Close()

	db = openMigrated(t, path)
	var stored []byte
	if err := db.QueryRow(`SELECT src FROM regs WHERE peer = ?`, []byte(pid(2))).Scan(&stored); err != nil || !slices.Equal(stored, src.AsSlice()) {
		t.Fatalf("stored source %v, %v; want %v", stored, err, src)
	}
}

// openMigrated opens the database at path beside the store, closed by the
// test's end, and checks that its schema is the current version, 4.
func openMigrated(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 4 {
		t.Fatalf("user_version %d, %v; want 4", v, err)
	}
	return db
}

// TestMigratesVersion2: a database of version 2, whose rows are keyed by
// their sequence number, opens as version 3. Every registration keeps its
// sequence number, Discover pages through them in the same order, the
// sequence goes on from the greatest, and the migrated rows count in their
// peer's limit and their source's quota.
func TestMigratesVersion2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rz.db")
	db, err := sql.Open("sqlite", path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	v2 := append(slices.Clone(version1[:len(version1)-1]),
		`ALTER TABLE regs ADD COLUMN src BLOB`,
		`ALTER TABLE regs ADD COLUMN src_addr BLOB`,
		`ALTER TABLE regs ADD COLUMN src_net BLOB`,
		`CREATE INDEX regs_src_addr ON regs (src_addr, expires)`,
		`CREATE INDEX regs_src_net ON regs (src_net, expires)`,
		`UPDATE meta SET seq = 300, total = 3, namespaces = 2`,
		`UPDATE namespaces SET n = 2`,
		`INSERT INTO namespaces (ns, n) VALUES ('other', 1)`,
		`PRAGMA user_version = 2`,
	)
	for _, q := range v2 {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	src := netip.MustParseAddr("192.0.2.1")
	exp := epoch.Add(time.Hour).UnixNano()
	// Inserted out of sequence order, as refreshes leave them.
	for _, r := range []struct {
		seq int
		ns  string
		p   peer.ID
	}{{200, "ns", pid(2)}, {100, "ns", pid(1)}, {300, "other", pid(1)}} {
		if _, err := db.Exec(`INSERT INTO regs (seq, ns, peer, record, expires, src, src_addr, src_net) VALUES (?, ?, ?, 'old', ?, ?, ?, ?)`,
			r.seq, r.ns, []byte(r.p), exp, src.AsSlice(), []byte{1}, []byte{2}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s := open(t, path)
	defer s.Close()
	var seqs []uint64
	for after := uint64(0); ; {
		page, err := s.Discover(ctx, nil, "", after, 1, epoch)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		seqs = append(seqs, page[0].Seq)
		after = page[0].Seq
	}
	if !slices.Equal(seqs, []uint64{100, 200, 300}) {
		t.Fatalf("sequence numbers after migrating %v, want [100 200 300]", seqs)
	}
	if regs, err := s.Discover(ctx, nil, "ns", 100, 10, epoch); err != nil || len(regs) != 1 || regs[0].Peer != pid(2) {
		t.Fatalf("namespace ns after 100: %v, %v; want the registration of %s", regs, err, pid(2))
	}
	if _, err := s.Register(ctx, reg("third", pid(1), epoch.Add(time.Hour)), store.Limits{MaxRegistrationsPerPeer: 2}, epoch); !errors.Is(err, store.ErrPeerLimit) {
		t.Fatalf("a third registration of a peer holding two migrated ones: %v, want %v", err, store.ErrPeerLimit)
	}
	if seq, err := s.Register(ctx, reg("ns", pid(1), epoch.Add(2*time.Hour)), store.Limits{}, epoch); err != nil || seq != 301 {
		t.Fatalf("refreshing a migrated registration: seq %d, %v; want 301", seq, err)
	}
	st, err := s.Stats(ctx, epoch)
	if err != nil || st != (store.Stats{Registrations: 3, Namespaces: 2}) {
		t.Fatalf("stats %+v, %v; want 3 registrations in 2 namespaces", st, err)
	}
	s.Close()

	db = openMigrated(t, path)
	var n int
	// The refresh above came from no source and took its row out.
	if err := db.QueryRow(`SELECT count(*) FROM regs WHERE src_addr = ?`, []byte{1}).Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows of the migrated source: %d, %v; want 2", n, err)
	}
}

// TestRefusesNewerSchema: a database of a later version is refused with a
// message saying so.
func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rz.db")
	db, err := sql.Open("sqlite", path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := sqlite.Open(path); err == nil || !strings.Contains(err.Error(), "newer than this program's") {
		t.Fatalf("opening version 99: %v, want a refusal", err)
	}
}

// TestMmapSize: the store maps what WithMmapSize asks for, DefaultMmapSize
// without it, and nothing for 0.
func TestMmapSize(t *testing.T) {
	for _, c := range []struct {
		opts []sqlite.Option
		want int64
	}{
		{nil, sqlite.DefaultMmapSize},
		{[]sqlite.Option{sqlite.WithMmapSize(0)}, 0},
		{[]sqlite.Option{sqlite.WithMmapSize(1 << 20)}, 1 << 20},
	} {
		s := open(t, filepath.Join(t.TempDir(), "rz.db"), c.opts...)
		got, err := sqlite.MmapSize(s)
		s.Close()
		if err != nil || got != c.want {
			t.Errorf("mmap_size %d, %v; want %d", got, err, c.want)
		}
	}
}

// TestUnsyncedSequenceSurvivesPowerLoss plays a power loss under
// synchronous NORMAL, where a commit is seen before it is on disk: the files
// are put back as they were after the first registration, after two more
// were discovered. The sequence resumes past every number a DISCOVER saw, so
// the cookie taken then still reaches the registrations made after the loss.
func TestUnsyncedSequenceSurvivesPowerLoss(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "rz.db")
	s := open(t, path, sqlite.WithSynchronous("NORMAL"))
	if _, err := s.Register(ctx, reg("ns", pid(1), epoch.Add(time.Hour)), store.Limits{}, epoch); err != nil {
		t.Fatal(err)
	}
	// What is on disk at the loss: the files as they are now.
	saved := map[string][]byte{}
	for _, name := range []string{"rz.db", "rz.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		saved[name] = b
	}
	for i := 2; i <= 3; i++ {
		if _, err := s.Register(ctx, reg("ns", pid(i), epoch.Add(time.Hour)), store.Limits{}, epoch); err != nil {
			t.Fatal(err)
		}
	}
	seen, err := s.Discover(ctx, nil, "ns", 0, 10, epoch)
	if err != nil || len(seen) != 3 {
		t.Fatalf("discovered %v, %v; want 3", seen, err)
	}
	cookie := seen[2].Seq
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"rz.db-shm", "rz.db-wal"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	for name, b := range saved {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, path, sqlite.WithSynchronous("NORMAL"))
	defer s.Close()
	if got, err := s.Discover(ctx, nil, "ns", 0, 10, epoch); err != nil || len(got) != 1 || got[0].Peer != pid(1) {
		t.Fatalf("after the loss: %v, %v; want only the first registration", got, err)
	}
	seq, err := s.Register(ctx, reg("ns", pid(4), epoch.Add(time.Hour)), store.Limits{}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if seq <= cookie {
		t.Fatalf("a registration after the loss got seq %d, not past %d, which a DISCOVER saw before it", seq, cookie)
	}
	got, err := s.Discover(ctx, nil, "ns", cookie, 10, epoch)
	if err != nil || len(got) != 1 || got[0].Peer != pid(4) {
		t.Fatalf("discovering from the cookie taken before the loss: %v, %v; want the new registration", got, err)
	}
}

// TestUnsyncedSequenceStaysUnderItsLimit registers past several
// reservations under synchronous NORMAL: every sequence number handed out is
// under the limit on file, and a reopened store resumes at that limit. Under
// FULL a limit is kept when the writer syncs the log after each commit, and
// none when SQLite syncs it before the commit is seen.
func TestUnsyncedSequenceStaysUnderItsLimit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rz.db")
	s := open(t, path, sqlite.WithSynchronous("NORMAL"), sqlite.WithSeqReserve(4))
	var wg sync.WaitGroup
	var seqs seqSet
	for w := range 4 {
		wg.Go(func() {
			for i := range 10 {
				seq, err := s.Register(ctx, reg("ns", pid(w*100+i%5), epoch.Add(time.Hour)), store.Limits{}, epoch)
				if err != nil {
					t.Error(err)
					return
				}
				seqs.add(t, seq)
				limit, err := sqlite.SeqLimit(s)
				if err != nil {
					t.Error(err)
					return
				}
				if int64(seq) > limit {
					t.Errorf("seq %d handed out past the limit %d on file", seq, limit)
				}
			}
		})
	}
	wg.Wait()
	if seqs.len() != 40 {
		t.Fatalf("%d sequence numbers, want 40", seqs.len())
	}
	limit, err := sqlite.SeqLimit(s)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, path, sqlite.WithSynchronous("NORMAL"), sqlite.WithSeqReserve(4))
	seq, err := s.Register(ctx, reg("ns", pid(1000), epoch.Add(time.Hour)), store.Limits{}, epoch)
	s.Close()
	if err != nil || int64(seq) != limit+1 {
		t.Fatalf("after reopening: seq %d, %v; want %d, past the limit", seq, err, limit+1)
	}

	// FULL synced by the writer: commits are seen just before their sync,
	// so a limit is kept. FULL synced by SQLite: none.
	for _, c := range []struct {
		writerSync, reserves bool
	}{{true, true}, {false, false}} {
		full := open(t, filepath.Join(t.TempDir(), "rz.db"), sqlite.WithWriterSync(c.writerSync))
		if _, err := full.Register(ctx, reg("ns", pid(1), epoch.Add(time.Hour)), store.Limits{}, epoch); err != nil {
			t.Fatal(err)
		}
		limit, err := sqlite.SeqLimit(full)
		ws := full.WriterSync()
		full.Close()
		if c.writerSync && !ws {
			t.Logf("FULL: the writer does not sync the log on this platform")
			continue
		}
		if err != nil || (limit != 0) != c.reserves {
			t.Errorf("FULL, writer sync %v: limit %d, %v; want one kept: %v", c.writerSync, limit, err, c.reserves)
		}
	}
}
