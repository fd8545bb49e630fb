// Package postgres is a store.Store kept in a PostgreSQL database, which
// several rendezvous points may share so as to act as one: sequence numbers
// are unique and growing across all of them, a cookie from one point works
// at another, and limits hold across them.
//
// # Sequence numbers without skips
//
// A PostgreSQL SEQUENCE hands out numbers in the order transactions ask for
// them, not in the order they commit: with two concurrent writers, seq 6 may
// commit before seq 5, and a reader that saw 6 would then page past 5 for
// ever. Instead, every write transaction starts by locking the single row of
// rendezvous_counters (Register takes its number there with
// UPDATE ... SET seq = seq + 1 RETURNING seq) and keeps the lock until it
// commits. Since the next writer gets the row, and so its number, only once
// the previous writer has committed and become visible, numbers are assigned
// in commit order: any snapshot that holds seq k holds every registration
// numbered below k that is still there. A Discover, a single SELECT of
// seq > cookie in seq order, therefore never passes over a registration
// acknowledged before it began. Transactions run at READ COMMITTED, so the
// statements that follow the lock see everything committed before it: the
// limit checks of one writer see the registrations of the previous one,
// whichever point made them, and the per-peer, per-source and global limits
// hold across points exactly. Each registration keeps the address it came
// from and the two prefixes the per-source quotas count by (src, src_addr,
// src_net); a Register under quotas counts the live rows of its source's
// prefixes through their (prefix, expires) indexes, within the same lock.
//
// # Group commit
//
// Writes to one database are therefore serialised (reads are not). What one
// holder of the row costs the others is its hold time: a round trip and a
// commit, which waits for the write-ahead log to reach the disk, rather than
// the work of one REGISTER. So a point applies concurrent REGISTERs
// together. Register hands its registration to the point's writer and waits
// for the answer; the writer takes every REGISTER queued and, in one
// transaction:
//
//   - sends BEGIN, the lock of the counter row and one SELECT that reads,
//     for every registration of the batch, what the limit checks need (the
//     existing row of its (namespace, peer), the live rows of its peer and
//     of its source's address and network, whether its namespace has rows),
//     all in one message;
//   - decides in order, in memory, each registration seeing the ones before
//     it in the batch: their changes are applied to the counts it read, so
//     every limit holds exactly as if they had come one at a time, and a
//     refusal answers that one alone;
//   - sends the writes (UPDATE of the rows replaced, INSERT of the new ones,
//     the namespace counts and the counter row, each one statement over
//     arrays) in one message, then COMMIT once they have all succeeded in
//     time, then answers each REGISTER. (Sent with the writes, a COMMIT
//     would still commit them after the point gave up on a write held up
//     by a lock, once the lock was let go.)
//
// A registration that could only be decided after removing what expired (a
// total, namespace or crowding limit that the counters say is reached)
// goes, with the ones after it, one at a time through the statements of a
// single Register, in the same transaction after the writes so far. Numbers
// are still assigned in commit order: a batch takes its numbers under the
// lock, keeps the lock until it commits, and commits them all at once.
// Nothing is acknowledged before COMMIT has returned: if the transaction
// fails, every REGISTER of the batch gets the error (store.ErrUnavailable
// for a fault) and none is acknowledged. Unregister and the sweeper, rarer,
// still take the row in transactions of their own.
//
// A point has two writers. While one batch commits, the next is already
// sent and waits for the row in the database, which gives it to the next
// batch without a round trip in between; a writer collects its batch only
// once the other has sent its COMMIT, so that it takes every REGISTER
// queued until then.
//
// Measured on one PostgreSQL 15 on the same 2-core machine, shared with
// other work (BENCHMARKS.md, BenchmarkRegisterConcurrent, four interleaved
// runs at 1-minute load averages 1.6–2.6, REGISTERs a second, median and
// range): from 16 concurrent writers, one REGISTER per transaction made
// 1610 [1370–1750], batches make 4140 [3620–4740], 2.6 times as many; from
// 64 writers, 1660 [1410–1750] and 5980 [5720–6170], 3.6 times. Two points
// on one database, each with 16 or 64 writers, together make 4300
// [3600–4790] and 6670 [6350–7240]: 1.04 and 1.12 times what one point
// makes. The row is held one batch after the other whichever point sent
// it, and if a batch holds about half the writers of its point, these
// figures fit a batch holding the row about 0.8 ms (a commit and two round
// trips) plus 0.14 ms a registration (its row, seven index entries and
// their log): at most about 7000 a second however large the batches. More
// points add availability and read capacity, not write throughput.
//
// Writers that overlap, with numbers from a SEQUENCE and readers bounded by
// a watermark below which no transaction is in flight (from
// pg_current_xact_id and pg_snapshot_xmin), were not chosen: the limits
// would still need the writers serialised, since the count one writer
// checks must include what the other is adding, so the global and
// per-source limits would need locks of their own; every Discover would
// wait on the oldest transaction in flight; and the xid functions are
// PostgreSQL's alone. Batching keeps the one lock and the one argument
// above.
//
// # Schema and migrations
//
// The program creates and migrates the schema at Open, in the database's
// current schema (set search_path in the DSN to choose one). Migrations are
// numbered; rendezvous_schema_migrations records those applied, and Open
// applies the others in one transaction holding pg_advisory_xact_lock, so
// points starting together do not race. Registrations are in
// rendezvous_registrations, keyed by (ns, peer), with a unique index on seq
// and indexes on (ns, seq), (peer, expires) and (expires); the namespace is
// bytea, since a valid UTF-8 namespace may hold a NUL that text refuses.
// rendezvous_counters keeps the sequence and the numbers of rows and
// namespaces (rendezvous_namespaces keeps the rows of each), so limits are
// checked without counting the table.
//
// # Expiry
//
// Expired rows are never returned or counted. Each point sweeps them in the
// background (bounded DELETEs, each its own transaction, idempotent, so any
// number of points may sweep at once), up to the latest "now" its calls were
// given; a Register about to be refused on the total or namespace limit, and
// Stats, first remove what expired at their now, so that the counters hold
// exactly the live registrations.
//
// # Faults
//
// Every call is bounded by WithOpTimeout (default 2s). An error from an
// unreachable, failing or overloaded database, or a timeout, matches
// store.ErrUnavailable under errors.Is; the pool replaces broken connections,
// so the store recovers by itself once the database is back.
//
// # Portability
//
// The SQL avoids PostgreSQL-only mechanisms where it can (no LISTEN/NOTIFY,
// no xmin or ctid, no SEQUENCE ordering assumptions, no triggers or stored
// functions) with an eye on PostgreSQL-compatible distributed databases
// (CockroachDB, YugabyteDB). Only PostgreSQL 15 was tried. Known gaps there:
// pg_advisory_xact_lock (migrations) and READ COMMITTED may need to be
// enabled or replaced (under SERIALIZABLE the counter row makes writers
// retry: retry errors, SQLSTATE class 40, are reported as ErrUnavailable).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/internal/horizon"
	"github.com/rendezvous-p2p/rendezvous/store/internal/srccol"
)

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("postgres store is closed")

// Option configures Open.
type Option func(*config)

type config struct {
	opTimeout      time.Duration
	migrateTimeout time.Duration
	sweepInterval  time.Duration
	sweepBatch     int
	pool           func(*pgxpool.Config)
	sweepDone      func() // called after each pass of the sweeper; for tests
}

// WithOpTimeout bounds the time of every call, connecting included; default
// 2s.
func WithOpTimeout(d time.Duration) Option { return func(c *config) { c.opTimeout = d } }

// WithMigrateTimeout bounds the schema migration at Open; default one minute.
func WithMigrateTimeout(d time.Duration) Option { return func(c *config) { c.migrateTimeout = d } }

// WithSweepInterval sets how often this point removes expired registrations
// in the background; default one minute, with jitter. Zero or less disables
// the background sweeper.
func WithSweepInterval(d time.Duration) Option { return func(c *config) { c.sweepInterval = d } }

// WithSweepBatch bounds the rows one sweep transaction deletes; default 1000.
func WithSweepBatch(n int) Option { return func(c *config) { c.sweepBatch = n } }

// WithPoolConfig lets the caller adjust the pool configuration parsed from
// the DSN (sizes, connection hooks, runtime parameters) before it is used.
func WithPoolConfig(f func(*pgxpool.Config)) Option { return func(c *config) { c.pool = f } }

// Store is a store.Store kept in PostgreSQL.
type Store struct {
	cfg  config
	pool *pgxpool.Pool
	quit chan struct{}
	wg   sync.WaitGroup
	// ops takes each Register to a writer goroutine (writeLoop).
	ops chan *op
	// turn is held by the writer collecting and preparing a batch.
	turn chan struct{}

	closeOnce sync.Once
	closed    atomic.Bool
	// horizon is the greatest "now" (Unix nanoseconds) passed to any call.
	horizon horizon.Horizon
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a PostgreSQL URL or key=value
// string, as pgx accepts), creates or migrates the schema, and starts the
// background sweeper. An unreachable database gives an error matching
// store.ErrUnavailable.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg := config{opTimeout: 2 * time.Second, migrateTimeout: time.Minute, sweepInterval: time.Minute, sweepBatch: 1000}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.sweepBatch = max(cfg.sweepBatch, 1)
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if pc.ConnConfig.ConnectTimeout == 0 || pc.ConnConfig.ConnectTimeout > cfg.opTimeout {
		pc.ConnConfig.ConnectTimeout = cfg.opTimeout
	}
	if cfg.pool != nil {
		cfg.pool(pc)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{cfg: cfg, pool: pool, quit: make(chan struct{}), ops: make(chan *op), turn: make(chan struct{}, 1)}
	mctx, cancel := context.WithTimeout(ctx, max(cfg.migrateTimeout, cfg.opTimeout))
	defer cancel()
	if err := s.migrate(mctx); err != nil {
		pool.Close()
		return nil, s.wrap(fmt.Errorf("migrate: %w", err))
	}
	for range batchWriters {
		s.wg.Add(1)
		go s.writeLoop()
	}
	if cfg.sweepInterval > 0 {
		s.wg.Add(1)
		go s.sweepLoop()
	}
	return s, nil
}

// migrationLock is the pg_advisory_xact_lock key of the migrations.
const migrationLock int64 = 0x72656e64657a766f // "rendezvo"

// migrations are the schema versions in order: migration i makes version i+1.
var migrations = []func(ctx context.Context, tx pgx.Tx) error{
	func(ctx context.Context, tx pgx.Tx) error {
		for _, q := range []string{
			`CREATE TABLE rendezvous_registrations (
				ns      bytea  NOT NULL,
				peer    bytea  NOT NULL,
				record  bytea  NOT NULL,
				expires bigint NOT NULL,
				seq     bigint NOT NULL,
				PRIMARY KEY (ns, peer)
			)`,
			`CREATE UNIQUE INDEX rendezvous_registrations_seq ON rendezvous_registrations (seq)`,
			`CREATE INDEX rendezvous_registrations_ns_seq ON rendezvous_registrations (ns, seq)`,
			`CREATE INDEX rendezvous_registrations_peer_expires ON rendezvous_registrations (peer, expires)`,
			`CREATE INDEX rendezvous_registrations_expires ON rendezvous_registrations (expires)`,
			`CREATE TABLE rendezvous_namespaces (ns bytea PRIMARY KEY, n bigint NOT NULL)`,
			`CREATE TABLE rendezvous_counters (
				id         integer PRIMARY KEY CHECK (id = 1),
				seq        bigint  NOT NULL,
				total      bigint  NOT NULL,
				namespaces bigint  NOT NULL
			)`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		// Like the memory store, start at the wall clock, so that cookies
		// of a lost database still continue.
		_, err := tx.Exec(ctx, `INSERT INTO rendezvous_counters (id, seq, total, namespaces) VALUES (1, $1, 0, 0)`, time.Now().UnixNano())
		return err
	},
	// Version 2: the source of each registration, for the per-source
	// quotas. Rows of version 1 keep no source and count in no quota.
	func(ctx context.Context, tx pgx.Tx) error {
		for _, q := range []string{
			`ALTER TABLE rendezvous_registrations ADD COLUMN src bytea,
				ADD COLUMN src_addr bytea, ADD COLUMN src_net bytea`,
			`CREATE INDEX rendezvous_registrations_src_addr ON rendezvous_registrations (src_addr, expires)`,
			`CREATE INDEX rendezvous_registrations_src_net ON rendezvous_registrations (src_net, expires)`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	},
}

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS rendezvous_schema_migrations (
		version    integer     PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return err
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM rendezvous_schema_migrations`).Scan(&v); err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this program's %d", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		if err := migrations[v](ctx, tx); err != nil {
			return fmt.Errorf("to version %d: %w", v+1, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rendezvous_schema_migrations (version) VALUES ($1)`, v+1); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// wrap classifies err: unreachable, failing or overloaded database, or a
// timeout, is store.ErrUnavailable.
func (s *Store) wrap(err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return ErrClosed
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", // connection exception
			"40", // transaction rollback: serialization failure, deadlock
			"53", // insufficient resources
			"57", // operator intervention: shutdown, cancel, statement timeout
			"58": // system error
			return fmt.Errorf("postgres: %w: %w", store.ErrUnavailable, err)
		}
		return fmt.Errorf("postgres: %w", err)
	}
	if errors.Is(err, pgx.ErrNoRows) || errors.Is(err, pgx.ErrTooManyRows) {
		return fmt.Errorf("postgres: %w", err)
	}
	// Connecting, network and timeout errors.
	return fmt.Errorf("postgres: %w: %w", store.ErrUnavailable, err)
}

// inTx runs fn in a READ COMMITTED transaction bounded by the op timeout.
func (s *Store) inTx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.opTimeout)
	defer cancel()
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		return fn(ctx, tx)
	})
	var lim limitError
	if errors.As(err, &lim) {
		return lim.error
	}
	return s.wrap(err)
}

// querier runs statements in a transaction: a pgx.Tx, or a connection
// that has begun one.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// limitError is a refusal on a limit, returned as is.
type limitError struct{ error }

// counters is the locked row of rendezvous_counters.
type counters struct{ seq, total, namespaces int64 }

const lockCounters = `SELECT seq, total, namespaces FROM rendezvous_counters WHERE id = 1 FOR UPDATE`

// Register implements store.Store: it hands the registration to the
// point's writer, which applies it in the next batch (see the package doc),
// and returns once that batch has committed.
func (s *Store) Register(ctx context.Context, reg store.Registration, lim store.Limits, now time.Time) (uint64, error) {
	n := horizon.Nanos(now)
	s.horizon.Observe(n)
	if s.closed.Load() {
		return 0, ErrClosed
	}
	o := &op{ctx: ctx, reg: reg, lim: lim, now: n, done: make(chan struct{})}
	select {
	case s.ops <- o:
	case <-s.quit:
		return 0, ErrClosed
	case <-ctx.Done():
		return 0, s.wrap(ctx.Err())
	}
	select {
	case <-o.done:
	case <-ctx.Done():
		// The batch may still commit it; it is not acknowledged.
		return 0, s.wrap(ctx.Err())
	}
	if o.err != nil {
		return 0, o.err
	}
	return uint64(o.seq), nil
}

// registerTx applies one registration at now (Unix nanoseconds) in the
// transaction of q, taking its sequence number from the counter row, which
// it locks if the transaction does not hold it yet. A refusal on a limit
// is a limitError and leaves the transaction usable.
func registerTx(ctx context.Context, tx querier, reg store.Registration, lim store.Limits, n int64) (int64, error) {
	ns, p := []byte(reg.Namespace), []byte(reg.Peer)
	// The lock that orders commits by seq: see the package doc.
	var c counters
	if err := tx.QueryRow(ctx, `UPDATE rendezvous_counters SET seq = seq + 1 WHERE id = 1
		RETURNING seq, total, namespaces`).Scan(&c.seq, &c.total, &c.namespaces); err != nil {
		return 0, err
	}
	src, srcAddr, srcNet := srccol.Columns(reg.Source)
	countAddr, countNet := srcAddr, srcNet
	if !lim.CountsSources() {
		countAddr, countNet = nil, nil // = NULL matches no row: nothing counted
	}
	var old *int64
	var peerLive, inAddr, inNet int64
	if err := tx.QueryRow(ctx, `SELECT
		(SELECT expires FROM rendezvous_registrations WHERE ns = $1 AND peer = $2),
		(SELECT count(*) FROM rendezvous_registrations WHERE peer = $2 AND expires > $3),
		(SELECT count(*) FROM rendezvous_registrations WHERE src_addr = $4 AND expires > $3),
		(SELECT count(*) FROM rendezvous_registrations WHERE src_net = $5 AND expires > $3)`,
		ns, p, n, countAddr, countNet).Scan(&old, &peerLive, &inAddr, &inNet); err != nil {
		return 0, err
	}
	existing := old != nil
	if !existing || *old <= n {
		// A new live pair: the limits apply.
		if lim.MaxRegistrationsPerPeer > 0 && peerLive >= int64(lim.MaxRegistrationsPerPeer) {
			return 0, limitError{store.ErrPeerLimit}
		}
		if err := lim.CheckQuota(reg.Source, int(inAddr), int(inNet)); err != nil {
			return 0, limitError{err}
		}
		isNew := func() (bool, error) {
			var ok bool
			err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM rendezvous_namespaces WHERE ns = $1)`, ns).Scan(&ok)
			return !ok, err
		}
		crowded := func() (bool, error) {
			st := store.Stats{Registrations: int(c.total), Namespaces: int(c.namespaces)}
			switch {
			case !lim.MayCrowd(reg.Source, int(inNet)):
				return false, nil
			case lim.Crowded(st, false):
				return true, nil
			case lim.Crowded(st, true):
				return isNew()
			}
			return false, nil
		}
		// The counters include expired rows not yet removed: when
		// they say a limit is reached, remove what expired and look
		// again.
		isCrowded, err := crowded()
		if err != nil {
			return 0, err
		}
		if isCrowded || (lim.MaxRegistrations > 0 && c.total >= int64(lim.MaxRegistrations)) ||
			(lim.MaxNamespaces > 0 && c.namespaces >= int64(lim.MaxNamespaces)) {
			for {
				d, err := sweep(ctx, tx, n, 10000, &c)
				if err != nil {
					return 0, err
				}
				if d < 10000 {
					break
				}
			}
			existing = existing && *old > n // an expired one is gone now
			if lim.MaxRegistrations > 0 && c.total >= int64(lim.MaxRegistrations) {
				return 0, limitError{store.ErrFull}
			}
			if lim.MaxNamespaces > 0 && c.namespaces >= int64(lim.MaxNamespaces) {
				fresh, err := isNew()
				if err != nil {
					return 0, err
				}
				if fresh {
					return 0, limitError{store.ErrFull}
				}
			}
			if isCrowded, err = crowded(); err != nil {
				return 0, err
			} else if isCrowded {
				return 0, limitError{store.ErrCrowded}
			}
		}
	}
	exp := horizon.Nanos(reg.Expires)
	if existing {
		if _, err := tx.Exec(ctx, `UPDATE rendezvous_registrations SET seq = $3, record = $4, expires = $5,
			src = $6, src_addr = $7, src_net = $8
			WHERE ns = $1 AND peer = $2`, ns, p, c.seq, reg.Record, exp, src, srcAddr, srcNet); err != nil {
			return 0, err
		}
	} else {
		if _, err := tx.Exec(ctx, `WITH r AS (
				INSERT INTO rendezvous_registrations (ns, peer, record, expires, seq, src, src_addr, src_net)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			), n AS (
				INSERT INTO rendezvous_namespaces AS t (ns, n) VALUES ($1, 1)
				ON CONFLICT (ns) DO UPDATE SET n = t.n + 1 RETURNING t.n
			)
			UPDATE rendezvous_counters SET total = total + 1,
				namespaces = namespaces + (SELECT CASE WHEN n.n = 1 THEN 1 ELSE 0 END FROM n)
			WHERE id = 1`, ns, p, reg.Record, exp, c.seq, src, srcAddr, srcNet); err != nil {
			return 0, err
		}
	}
	return c.seq, nil
}

// Unregister implements store.Store.
func (s *Store) Unregister(ctx context.Context, ns string, p peer.ID) error {
	return s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var c counters
		if err := tx.QueryRow(ctx, lockCounters).Scan(&c.seq, &c.total, &c.namespaces); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM rendezvous_registrations WHERE ns = $1 AND peer = $2 RETURNING ns`, []byte(ns), []byte(p))
		if err != nil {
			return err
		}
		_, err = removed(ctx, tx, rows, &c)
		return err
	})
}

// sweep deletes at most limit rows expired at now and updates the counters
// c, which the caller's transaction has locked. It returns the rows deleted.
func sweep(ctx context.Context, tx querier, now int64, limit int, c *counters) (int, error) {
	// = ANY (ARRAY(...)) keeps the plan on the seq index; an IN (subquery)
	// may be planned as a scan of the whole table.
	rows, err := tx.Query(ctx, `DELETE FROM rendezvous_registrations WHERE seq = ANY (ARRAY(
		SELECT seq FROM rendezvous_registrations WHERE expires <= $1 ORDER BY expires LIMIT $2
	)) RETURNING ns`, now, limit)
	if err != nil {
		return 0, err
	}
	return removed(ctx, tx, rows, c)
}

// removed reads the namespaces of the rows deleted and updates the
// counters.
func removed(ctx context.Context, tx querier, rows pgx.Rows, c *counters) (int, error) {
	per := map[string]int64{}
	var deleted int64
	for rows.Next() {
		var ns []byte
		if err := rows.Scan(&ns); err != nil {
			rows.Close()
			return 0, err
		}
		per[string(ns)]++
		deleted++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if deleted == 0 {
		return 0, nil
	}
	names := make([][]byte, 0, len(per))
	counts := make([]int64, 0, len(per))
	for ns, k := range per {
		names = append(names, []byte(ns))
		counts = append(counts, k)
	}
	if _, err := tx.Exec(ctx, `UPDATE rendezvous_namespaces AS t SET n = t.n - x.c
		FROM unnest($1::bytea[], $2::bigint[]) AS x (ns, c) WHERE t.ns = x.ns`, names, counts); err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, `DELETE FROM rendezvous_namespaces WHERE ns = ANY ($1::bytea[]) AND n <= 0`, names)
	if err != nil {
		return 0, err
	}
	gone := tag.RowsAffected()
	if _, err := tx.Exec(ctx, `UPDATE rendezvous_counters SET total = total - $1, namespaces = namespaces - $2 WHERE id = 1`,
		deleted, gone); err != nil {
		return 0, err
	}
	c.total -= deleted
	c.namespaces -= gone
	return int(deleted), nil
}

// sweepBatch removes at most limit rows expired at now, in a transaction of
// its own.
func (s *Store) sweepBatch(ctx context.Context, now int64, limit int) (int, error) {
	var d int
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var c counters
		if err := tx.QueryRow(ctx, lockCounters).Scan(&c.seq, &c.total, &c.namespaces); err != nil {
			return err
		}
		var err error
		d, err = sweep(ctx, tx, now, limit, &c)
		return err
	})
	return d, err
}

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
	ctx, cancel := context.WithTimeout(ctx, s.cfg.opTimeout)
	defer cancel()
	var rows pgx.Rows
	var err error
	if ns == "" {
		rows, err = s.pool.Query(ctx, `SELECT ns, peer, record, expires, seq FROM rendezvous_registrations
			WHERE seq > $1 AND expires > $2 ORDER BY seq LIMIT $3`, int64(after), n, limit)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT ns, peer, record, expires, seq FROM rendezvous_registrations
			WHERE ns = $1 AND seq > $2 AND expires > $3 ORDER BY seq LIMIT $4`, []byte(ns), int64(after), n, limit)
	}
	if err != nil {
		return dst, s.wrap(err)
	}
	defer rows.Close()
	for rows.Next() {
		var nsb, p, record []byte
		var exp, seq int64
		if err := rows.Scan(&nsb, &p, &record, &exp, &seq); err != nil {
			clear(dst[start:]) // drop what this call appended
			return dst[:start], s.wrap(err)
		}
		dst = append(dst, store.Registration{
			Namespace: string(nsb), Peer: peer.ID(p), Record: record,
			Expires: time.Unix(0, exp).UTC(), Seq: uint64(seq),
		})
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
	ctx, cancel := context.WithTimeout(ctx, s.cfg.opTimeout)
	defer cancel()
	for {
		d, err := s.sweepBatch(ctx, n, s.cfg.sweepBatch)
		if err != nil {
			return store.Stats{}, err
		}
		if d < s.cfg.sweepBatch {
			break
		}
	}
	var total, nss int64
	if err := s.pool.QueryRow(ctx, `SELECT total, namespaces FROM rendezvous_counters WHERE id = 1`).Scan(&total, &nss); err != nil {
		return store.Stats{}, s.wrap(err)
	}
	return store.Stats{Registrations: int(total), Namespaces: int(nss)}, nil
}

// Close implements store.Store: it stops the sweeper and closes the pool.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.quit)
		s.wg.Wait()
		s.pool.Close()
	})
	return nil
}

func (s *Store) sweepLoop() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-s.quit; cancel() }()
	for {
		// Jitter spreads the sweeps of several points.
		d := s.cfg.sweepInterval/2 + rand.N(s.cfg.sweepInterval)
		select {
		case <-s.quit:
			return
		case <-time.After(d):
		}
		h := s.horizon.Load()
		if h == 0 {
			continue
		}
		for {
			n, err := s.sweepBatch(ctx, h, s.cfg.sweepBatch)
			if err != nil || n < s.cfg.sweepBatch {
				break
			}
		}
		if s.cfg.sweepDone != nil {
			s.cfg.sweepDone()
		}
	}
}
