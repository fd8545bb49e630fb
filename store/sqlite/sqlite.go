// Package sqlite is a durable, embedded store.Store kept in one SQLite
// database file, in pure Go (modernc.org/sqlite, no cgo).
//
// # Durability
//
// The database runs in WAL mode with synchronous=FULL by default: every
// commit's frames of the write-ahead log are synced to disk before its
// writes are answered, so a registration whose Register has returned
// survives a crash of the process (SIGKILL) and also a crash of the machine
// or a power loss. synchronous=NORMAL survives a process crash too (the WAL
// frames are in the operating system's cache once written) but may lose the
// last commits on power loss; WithSynchronous("NORMAL") chooses it. The
// cost of FULL, one sync per commit, is shared between concurrent writers by
// group commit (below); BenchmarkRefreshSync measures it.
//
// Under FULL on Linux, the writer goroutine syncs the log itself: it commits
// under NORMAL, then calls fdatasync on the log and answers after it
// (WithWriterSync; walsync.go). What is on disk when a write is answered is
// what SQLite's own FULL puts there. The difference is in when readers see
// a commit: SQLite's FULL syncs before the commit is seen, the writer's sync
// just after. The writer's sync keeps the writer running through it, where
// SQLite's, an ordinary system call, let the writer queue behind the rest of
// the point for a processor each time it returned (BENCHMARKS.md).
//
// Whenever readers see a commit before it is on disk (NORMAL, or FULL
// synced by the writer), a DISCOVER may hand out a cookie past sequence
// numbers that a power loss then takes back. Such commits therefore number
// registrations only up to a limit kept in the meta row and raised, a
// million at a time, by a commit that is synced before it is seen; Open
// resumes the sequence at that limit. The sequence then never goes back,
// and cookies stay exact, in every mode.
//
// # Writes
//
// SQLite has one writer at a time, so every write (Register, Unregister,
// expiry sweeps) goes to a single writer goroutine holding one connection.
// The writer takes the requests that are waiting when it is free and applies
// them, in order, in one transaction (group commit): N concurrent Registers
// cost one fsync instead of N. Each request sees the effects of those before
// it, so limits hold exactly; a request refused on a limit changes nothing.
// Registers are acknowledged only after the transaction commits. Before
// it takes the waiting requests, the writer yields once to the goroutines
// ready to run, so that requests about to be submitted join the batch; with
// none ready it goes on at once, so a lone request never waits. Reads
// (Discover, Stats) run on a pool of other connections and never wait for
// the writer (WAL readers see the last committed snapshot). Each write
// transaction is BEGIN IMMEDIATE and reads the counters afresh, so several
// processes may open one file: SQLite's lock (waited for up to
// WithBusyTimeout) serialises their writers.
//
// # Sequence
//
// The sequence counter is a row of the meta table, written in the same
// transaction as the registrations it numbers, so it survives restarts and
// never goes back, even when the registration holding the greatest sequence
// number has been removed. A new database starts its sequence at the wall
// clock in nanoseconds, like the memory store, so cookies handed out by an
// earlier, lost database still continue. Since there is one writer at a
// time and sequence numbers are assigned in commit order, every snapshot a
// reader sees holds every registration numbered below its greatest one: a
// Discover never passes over an acknowledged registration.
//
// # Schema and cost
//
// The table regs keeps one row per registration under a stable rowid (id),
// with unique indexes on (ns, peer) and on seq, and indexes on (ns, seq),
// (expires), (peer), (src_addr) and (src_net). A refresh, most REGISTERs,
// updates its row in place and rewrites only the three indexes holding seq
// or expires; the others keep their entries. Register and Unregister cost
// O(log n), a Discover of k results O(log n + k) plus the expired rows not
// yet removed in its range. Each row keeps its source address and the two
// prefixes the per-source quotas count by (src, src_addr, src_net). A new
// registration counts the rows of its peer and of its source's prefixes
// from their indexes alone, O(log n + q) for q rows, which the limit and
// quotas bound. Those counts include expired rows not yet removed; since a
// limit only refuses more as its count grows, a count that passes is final,
// and one that would refuse is read again after removing what has expired.
// The meta row keeps the number of rows and of namespaces (the table
// namespaces keeps the rows of each), so limits are checked without counting
// the table. The schema version is PRAGMA user_version; migrations run in
// one IMMEDIATE transaction at Open.
//
// # Expiry
//
// Expired rows (Expires not after now) are never returned or counted; they
// are deleted by a background sweeper in batches (WithSweepBatch) at every
// WithSweepInterval, using the latest "now" any call has passed, and, when a
// limit is about to refuse a registration or Stats is asked, up to that
// call's now, so counters then hold exactly the live registrations.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/internal/horizon"
)

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("sqlite store is closed")

// Option configures Open.
type Option func(*config)

type config struct {
	synchronous   string
	writerSync    bool
	busyTimeout   time.Duration
	readers       int
	maxBatch      int
	sweepInterval time.Duration
	sweepBatch    int
	mmapSize      int64
	cacheKiB      int
	seqReserve    int64  // see writer.reserve; changed by tests only
	sweepDone     func() // called after each pass of the sweeper; for tests
}

// DefaultMmapSize is the default of WithMmapSize: the bytes of the database
// file read through a memory map (PRAGMA mmap_size).
const DefaultMmapSize = 1 << 30

// DefaultCacheKiB is the default page cache of each connection in KiB
// (PRAGMA cache_size).
const DefaultCacheKiB = 16 << 10

func defaults() config {
	return config{
		synchronous:   "FULL",
		writerSync:    true,
		busyTimeout:   5 * time.Second,
		readers:       4,
		maxBatch:      256,
		sweepInterval: time.Minute,
		sweepBatch:    1000,
		mmapSize:      DefaultMmapSize,
		cacheKiB:      DefaultCacheKiB,
		seqReserve:    defaultSeqReserve,
	}
}

// WithSynchronous sets PRAGMA synchronous: "FULL" (the default; survives
// power loss), "EXTRA", or "NORMAL" (survives a crash of the process but may
// lose the last commits on power loss).
func WithSynchronous(mode string) Option {
	return func(c *config) { c.synchronous = strings.ToUpper(mode) }
}

// WithWriterSync chooses who syncs the write-ahead log under synchronous
// FULL: the writer goroutine, after each commit and before it answers the
// commit's writes (true, the default), or SQLite, within each commit
// (false). Either way a write is answered only once it is on disk. With the
// writer's sync, readers may see a commit up to one sync before it is on
// disk, so the sequence is reserved as under NORMAL (see Durability) and
// cookies stay exact. It is on Linux only; elsewhere SQLite syncs.
func WithWriterSync(on bool) Option { return func(c *config) { c.writerSync = on } }

// writerSyncs reports whether the writer syncs the log after each commit.
func (c config) writerSyncs() bool {
	return c.writerSync && writerSyncSupported && c.synchronous == "FULL"
}

// connSync is PRAGMA synchronous of the connections: NORMAL when the writer
// syncs the log itself.
func (c config) connSync() string {
	if c.writerSyncs() {
		return "NORMAL"
	}
	return c.synchronous
}

// WithBusyTimeout sets how long a statement waits for a lock held by another
// process using the same file (PRAGMA busy_timeout); default 5s.
func WithBusyTimeout(d time.Duration) Option { return func(c *config) { c.busyTimeout = d } }

// WithReaders sets the number of connections serving Discover and Stats;
// default 4.
func WithReaders(n int) Option { return func(c *config) { c.readers = n } }

// WithMaxBatch bounds the writes committed together in one transaction;
// default 256. 1 disables group commit.
func WithMaxBatch(n int) Option { return func(c *config) { c.maxBatch = n } }

// WithSweepInterval sets how often expired registrations are removed in the
// background; default one minute. Zero or less disables the background
// sweeper (expired rows are still never served, and are removed when a limit
// or Stats needs it).
func WithSweepInterval(d time.Duration) Option { return func(c *config) { c.sweepInterval = d } }

// WithMemory sets the bytes of the database file memory-mapped for reading
// (PRAGMA mmap_size; default DefaultMmapSize, 0 disables) and the page cache
// of each connection in KiB (PRAGMA cache_size; default DefaultCacheKiB).
func WithMemory(mmapBytes int64, cacheKiB int) Option {
	return func(c *config) { c.mmapSize, c.cacheKiB = mmapBytes, cacheKiB }
}

// WithMmapSize sets the bytes of the database file memory-mapped for reading
// (PRAGMA mmap_size; default DefaultMmapSize). 0 disables the map: pages are
// then read into each connection's page cache, which WithMemory bounds.
// Pages read through the map count in the process's resident memory (as
// file-backed pages the kernel may drop), up to the whole file.
func WithMmapSize(bytes int64) Option { return func(c *config) { c.mmapSize = max(bytes, 0) } }

// WithSweepBatch bounds the rows one sweep transaction deletes; default 1000.
func WithSweepBatch(n int) Option { return func(c *config) { c.sweepBatch = n } }

// Store is a store.Store kept in a SQLite database file.
type Store struct {
	cfg  config
	db   *sql.DB
	w    *writer
	ops  chan *op
	quit chan struct{}
	wg   sync.WaitGroup

	closeOnce sync.Once
	closed    atomic.Bool
	// horizon is the greatest "now" (Unix nanoseconds) passed to any call:
	// the background sweeper removes what expired before it.
	horizon horizon.Horizon

	discoverNS  *sql.Stmt
	discoverAll *sql.Stmt
	stats       *sql.Stmt
}

var _ store.Store = (*Store)(nil)

// Open opens the store in the SQLite database at path, creating the file and
// its directory if needed, and migrates its schema to the current version.
func Open(path string, opts ...Option) (*Store, error) {
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	switch cfg.synchronous {
	case "FULL", "EXTRA", "NORMAL":
	default:
		return nil, fmt.Errorf("sqlite: unsupported synchronous mode %q", cfg.synchronous)
	}
	cfg.readers = max(cfg.readers, 1)
	cfg.maxBatch = max(cfg.maxBatch, 1)
	cfg.sweepBatch = max(cfg.sweepBatch, 1)
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
	}
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(cfg.busyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", cfg.connSync())
	// Reads go through a memory map rather than a read system call per
	// page, and each connection caches more pages than the 2 MiB default.
	q["_pragma"] = []string{fmt.Sprintf("mmap_size(%d)", cfg.mmapSize), fmt.Sprintf("cache_size(%d)", -cfg.cacheKiB)}
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db.SetMaxOpenConns(cfg.readers + 1)
	db.SetMaxIdleConns(cfg.readers + 1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s := &Store{cfg: cfg, db: db, ops: make(chan *op), quit: make(chan struct{})}
	if err := s.init(path); err != nil {
		if s.w != nil {
			s.w.close()
		}
		_ = db.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.writeLoop()
	if cfg.sweepInterval > 0 {
		s.wg.Add(1)
		go s.sweepLoop()
	}
	return s, nil
}

func (s *Store) init(path string) error {
	ctx := context.Background()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		_ = conn.Close()
		return fmt.Errorf("sqlite: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		_ = conn.Close()
		return fmt.Errorf("sqlite: journal mode is %q, not WAL", mode)
	}
	if err := migrate(ctx, conn); err != nil {
		_ = conn.Close()
		return err
	}
	// Commits that were not synced may have handed out sequence numbers up
	// to the reserved limit and then been lost: resume past them.
	if _, err := conn.ExecContext(ctx, `UPDATE meta SET seq = seq_limit WHERE id = 1 AND seq < seq_limit`); err != nil {
		_ = conn.Close()
		return fmt.Errorf("sqlite: %w", err)
	}
	s.w, err = newWriter(ctx, conn, s.cfg.connSync(), s.cfg.seqReserve)
	if err != nil {
		return err
	}
	if s.cfg.writerSyncs() {
		// The writer connection has the log open by now (it has read the
		// database in WAL mode).
		if s.w.wal, err = openWALSync(path + "-wal"); err != nil {
			return fmt.Errorf("sqlite: %w", err)
		}
	}
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = s.db.PrepareContext(ctx, q)
		return st
	}
	// INDEXED BY and the unary + keep the planner on the (ns, seq) index and
	// on the seq order, whatever the statistics say.
	s.discoverNS = prep(`SELECT seq, peer, record, expires FROM regs INDEXED BY regs_ns_seq
		WHERE ns = ? AND seq > ? AND +expires > ? ORDER BY seq LIMIT ?`)
	s.discoverAll = prep(`SELECT seq, ns, peer, record, expires FROM regs INDEXED BY regs_seq
		WHERE seq > ? AND +expires > ? ORDER BY seq LIMIT ?`)
	s.stats = prep(`SELECT total, namespaces FROM meta WHERE id = 1`)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

// migrations are the schema versions in order; migration i brings
// PRAGMA user_version from i to i+1.
var migrations = []func(ctx context.Context, c *sql.Conn) error{
	func(ctx context.Context, c *sql.Conn) error {
		stmts := []string{
			`CREATE TABLE regs (
				seq     INTEGER PRIMARY KEY,
				ns      TEXT    NOT NULL,
				peer    BLOB    NOT NULL,
				record  BLOB    NOT NULL,
				expires INTEGER NOT NULL
			)`,
			`CREATE UNIQUE INDEX regs_key ON regs (ns, peer)`,
			`CREATE INDEX regs_ns_seq ON regs (ns, seq)`,
			`CREATE INDEX regs_peer_expires ON regs (peer, expires)`,
			`CREATE INDEX regs_expires ON regs (expires)`,
			`CREATE TABLE namespaces (ns TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID`,
			`CREATE TABLE meta (
				id         INTEGER PRIMARY KEY CHECK (id = 1),
				seq        INTEGER NOT NULL,
				total      INTEGER NOT NULL,
				namespaces INTEGER NOT NULL
			)`,
		}
		for _, q := range stmts {
			if _, err := c.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		_, err := c.ExecContext(ctx, `INSERT INTO meta (id, seq, total, namespaces) VALUES (1, ?, 0, 0)`, time.Now().UnixNano())
		return err
	},
	// Version 2: the source of each registration, for the per-source
	// quotas. Rows of version 1 keep no source and count in no quota.
	func(ctx context.Context, c *sql.Conn) error {
		for _, q := range []string{
			`ALTER TABLE regs ADD COLUMN src BLOB`,
			`ALTER TABLE regs ADD COLUMN src_addr BLOB`,
			`ALTER TABLE regs ADD COLUMN src_net BLOB`,
			`CREATE INDEX regs_src_addr ON regs (src_addr, expires)`,
			`CREATE INDEX regs_src_net ON regs (src_net, expires)`,
		} {
			if _, err := c.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	},
	// Version 3: a stable rowid (id) and seq as a column, so that a refresh
	// updates its row in place and rewrites only the indexes holding seq or
	// expires; the peer and source indexes no longer hold expires (their
	// counts include expired rows until a sweep, see writer.register).
	func(ctx context.Context, c *sql.Conn) error {
		for _, q := range []string{
			`CREATE TABLE regs_v3 (
				id       INTEGER PRIMARY KEY,
				seq      INTEGER NOT NULL,
				ns       TEXT    NOT NULL,
				peer     BLOB    NOT NULL,
				record   BLOB    NOT NULL,
				expires  INTEGER NOT NULL,
				src      BLOB,
				src_addr BLOB,
				src_net  BLOB
			)`,
			`INSERT INTO regs_v3 (seq, ns, peer, record, expires, src, src_addr, src_net)
				SELECT seq, ns, peer, record, expires, src, src_addr, src_net FROM regs ORDER BY seq`,
			`DROP TABLE regs`,
			`ALTER TABLE regs_v3 RENAME TO regs`,
			`CREATE UNIQUE INDEX regs_key ON regs (ns, peer)`,
			`CREATE UNIQUE INDEX regs_seq ON regs (seq)`,
			`CREATE INDEX regs_ns_seq ON regs (ns, seq)`,
			`CREATE INDEX regs_expires ON regs (expires)`,
			`CREATE INDEX regs_peer ON regs (peer)`,
			`CREATE INDEX regs_src_addr ON regs (src_addr)`,
			`CREATE INDEX regs_src_net ON regs (src_net)`,
		} {
			if _, err := c.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	},
	// Version 4: the sequence limit of commits that are not synced (see
	// writer.reserve).
	func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, `ALTER TABLE meta ADD COLUMN seq_limit INTEGER NOT NULL DEFAULT 0`)
		return err
	},
}

func migrate(ctx context.Context, c *sql.Conn) (err error) {
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = c.ExecContext(ctx, "ROLLBACK")
			err = fmt.Errorf("sqlite: migrate: %w", err)
		}
	}()
	var v int
	if err := c.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this program's %d", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		if err := migrations[v](ctx, c); err != nil {
			return fmt.Errorf("to version %d: %w", v+1, err)
		}
		if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			return err
		}
	}
	_, err = c.ExecContext(ctx, "COMMIT")
	return err
}

// Register implements store.Store.
func (s *Store) Register(ctx context.Context, reg store.Registration, limits store.Limits, now time.Time) (uint64, error) {
	n := horizon.Nanos(now)
	s.horizon.Observe(n)
	o := &op{kind: opRegister, ctx: ctx, reg: reg, limits: limits, now: n}
	if err := s.submit(ctx, o); err != nil {
		return 0, err
	}
	return o.seq, nil
}

// Unregister implements store.Store.
func (s *Store) Unregister(ctx context.Context, ns string, p peer.ID) error {
	return s.submit(ctx, &op{kind: opUnregister, ctx: ctx, reg: store.Registration{Namespace: ns, Peer: p}})
}

// recordChunk is the size of the buffers Discover copies records into.
const recordChunk = 4 << 10

// Discover implements store.Store.
func (s *Store) Discover(ctx context.Context, dst []store.Registration, ns string, after uint64, limit int, now time.Time) ([]store.Registration, error) {
	if s.closed.Load() {
		return dst, ErrClosed
	}
	start := len(dst)
	n := horizon.Nanos(now)
	s.horizon.Observe(n)
	if limit <= 0 || after >= math.MaxInt64 {
		return dst, nil
	}
	var rows *sql.Rows
	var err error
	if ns == "" {
		rows, err = s.discoverAll.QueryContext(ctx, int64(after), n, limit)
	} else {
		rows, err = s.discoverNS.QueryContext(ctx, ns, int64(after), n, limit)
	}
	if err != nil {
		return dst, s.wrap(err)
	}
	defer rows.Close()
	// The driver's bytes are copied once: peers into strings, records into
	// chunks shared by the page.
	var peerBytes, record sql.RawBytes
	var chunk []byte
	for rows.Next() {
		r := store.Registration{Namespace: ns}
		var seq, exp int64
		var err error
		if ns == "" {
			err = rows.Scan(&seq, &r.Namespace, &peerBytes, &record, &exp)
		} else {
			err = rows.Scan(&seq, &peerBytes, &record, &exp)
		}
		if err != nil {
			clear(dst[start:]) // drop what this call appended
			return dst[:start], s.wrap(err)
		}
		if len(record) > cap(chunk)-len(chunk) {
			chunk = make([]byte, 0, max(len(record), recordChunk))
		}
		chunk = append(chunk, record...)
		r.Record = chunk[len(chunk)-len(record) : len(chunk) : len(chunk)]
		r.Peer, r.Seq, r.Expires = peer.ID(peerBytes), uint64(seq), time.Unix(0, exp).UTC()
		dst = append(dst, r)
	}
	if err := rows.Err(); err != nil {
		clear(dst[start:]) // drop what this call appended
		return dst[:start], s.wrap(err)
	}
	return dst, nil
}

// Stats implements store.Store. It first removes what has expired at now,
// in bounded transactions, so that the counters it reads are exact.
func (s *Store) Stats(ctx context.Context, now time.Time) (store.Stats, error) {
	n := horizon.Nanos(now)
	s.horizon.Observe(n)
	for {
		o := &op{kind: opSweep, ctx: ctx, now: n, limit: s.cfg.sweepBatch}
		if err := s.submit(ctx, o); err != nil {
			return store.Stats{}, err
		}
		if o.deleted < s.cfg.sweepBatch {
			break
		}
	}
	var st store.Stats
	if err := s.stats.QueryRowContext(ctx).Scan(&st.Registrations, &st.Namespaces); err != nil {
		return store.Stats{}, s.wrap(err)
	}
	return st, nil
}

// Close implements store.Store: it waits for the writes in progress, stops
// the writer and the sweeper and closes the database.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.quit)
		s.wg.Wait()
		s.w.close()
		for _, st := range []*sql.Stmt{s.discoverNS, s.discoverAll, s.stats} {
			_ = st.Close()
		}
		err = s.db.Close()
	})
	return err
}

// SyncMode is the synchronous mode the store was opened with: "FULL",
// "EXTRA" or "NORMAL". Under FULL and EXTRA every write is on disk before
// it is answered; WriterSync tells who syncs it.
func (s *Store) SyncMode() string { return s.cfg.synchronous }

// WriterSync reports whether the writer goroutine syncs the write-ahead log
// after each commit (see WithWriterSync), rather than SQLite within it.
func (s *Store) WriterSync() bool { return s.w.wal != nil }

func (s *Store) wrap(err error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return wrapErr(err)
}

// submit hands o to the writer and waits for its result.
func (s *Store) submit(ctx context.Context, o *op) error {
	if s.closed.Load() {
		return ErrClosed
	}
	o.done = make(chan struct{})
	select {
	case s.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return ErrClosed
	}
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		// The write may still be committed.
		return ctx.Err()
	}
}

func (s *Store) writeLoop() {
	defer s.wg.Done()
	batch := make([]*op, 0, s.cfg.maxBatch)
	for {
		var first *op
		select {
		case first = <-s.ops:
		case <-s.quit:
			return
		}
		batch = append(batch[:0], first)
		// Let the goroutines that are ready to run (requests about to be
		// submitted) run first, so that they join this batch and share its
		// commit. It costs no wait: with nothing else ready, the writer
		// goes on at once.
		runtime.Gosched()
	drain:
		for len(batch) < s.cfg.maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.w.run(batch)
		for i := range batch {
			batch[i] = nil
		}
	}
}

func (s *Store) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		h := s.horizon.Load()
		if h == 0 {
			continue
		}
		// One batch per transaction, so requests wait at most one batch.
		for {
			o := &op{kind: opSweep, ctx: context.Background(), now: h, limit: s.cfg.sweepBatch}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := s.submit(ctx, o)
			cancel()
			if err != nil || o.deleted < s.cfg.sweepBatch {
				break
			}
		}
		if s.cfg.sweepDone != nil {
			s.cfg.sweepDone()
		}
	}
}
