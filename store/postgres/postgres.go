// Package postgres is a store.Store kept in a PostgreSQL database, which
// several rendezvous points may share so as to act as one: sequence numbers
// are unique and growing across all of them, a cookie from one point works
// at another, and limits hold across them.
//
// # Sequence numbers without skips
//
// A cookie is a sequence number: a Discover returns the registrations
// numbered above it, in order. Numbers must therefore never become visible
// out of order: if a reader saw 6 before 5 had committed, it would page
// past 5 for ever. Numbers come from transaction ids. The k-th
// registration a transaction writes is numbered
//
//	base + xid<<9 + k
//
// where xid is the transaction's id (pg_current_xact_id, 64 bits, assigned
// by its first write) and base the counter row's seq, which version 3 of
// the schema froze at the last number handed out before (so numbers keep
// growing across the migration, and, from a new database, past cookies of
// a lost one, since a new database starts base at the wall clock). A
// Discover first reads the watermark, base + xmin<<9, where xmin is the
// oldest transaction id still in flight (pg_snapshot_xmin of the current
// snapshot), then the page, and returns only the registrations below the
// watermark. Every transaction below it has ended before the page's
// snapshot was taken, so the page holds every registration below the
// watermark that is still there, and no transaction can add one below it
// later. Should the page stop short of its limit at registrations already
// committed above the watermark (a transaction begun earlier is still in
// flight), Discover reads again until they are below it, waiting up to
// WithDiscoverWait (1s): an acknowledged REGISTER is seen by the next
// Discover, as long as no transaction in the database cluster stays open
// longer than that. Transaction ids are the cluster's, so a long writing
// transaction in any database of the cluster holds the watermark back: give
// the points a cluster of their own, or keep other transactions short.
//
// # Writers that overlap, and exact limits
//
// Writers hold nothing that all of them need at once: an advisory lock
// (globalLock) taken shared, and, exclusively, one advisory lock per peer,
// per source address and per source network they write (keys hashed with
// FNV-1a), plus each namespace's lock shared, all taken in the order of the
// keys, before they read anything. Transactions run at READ COMMITTED, so
// what a writer reads after its locks includes everything committed by the
// writers that held them before, whichever point they ran in. So the
// per-peer limit and the per-source quotas, which count rows of one peer or
// one source prefix, and whether a (namespace, peer) is new, are exact
// across points, and writers of different peers and sources never wait for
// each other. Unregister holds its peer's and its namespace's locks
// exclusively, so that it may delete the namespace's row once it is empty
// while no writer is adding to it.
//
// The global limits (MaxRegistrations, MaxNamespaces and the crowding
// thresholds) count the whole store: the totals are the sums of the
// counterShards rows of rendezvous_counters, each writer adding to one at
// random before it commits. A writer decides while overlapping others only
// if the totals it read, plus maxBatch registrations and namespaces for each
// connection the server accepts (max_connections: more than could be in
// flight at once), stay below every global limit and threshold. Then no
// interleaving can reach one, and the totals are exact for every decision.
// Otherwise it rolls back and runs again alone, holding globalLock
// exclusively, where it sees every writer's total and may first remove what
// expired. The background sweeper and Stats hold it exclusively too.
//
// # Group commit
//
// A point applies concurrent REGISTERs together. Register hands its
// registration to the point's writers and waits for the answer; a writer
// takes every REGISTER queued and, in one transaction:
//
//   - sends BEGIN, its locks, the read of the totals and one SELECT that
//     reads, for every registration of the batch, what the limit checks
//     need (the existing row of its (namespace, peer), the live rows of its
//     peer and of its source's address and network, whether its namespace
//     has a row), all in one message; right after BEGIN, it turns off for
//     the transaction the planner's sequential scans, hash and merge joins
//     and JIT (indexPlans), so that the plans kept with its statements look
//     each key up in the indexes even when they were made on an empty
//     table, as they are on a new schema;
//   - decides in order, in memory, each registration seeing the ones before
//     it in the batch: their changes are applied to the counts it read, so
//     every limit holds exactly as if they had come one at a time, and a
//     refusal answers that one alone;
//   - sends the writes (UPDATE of the rows replaced, INSERT of the new ones,
//     the new namespaces and its counter row, each one statement over
//     arrays) in one message, then COMMIT once they have all succeeded in
//     time, then answers each REGISTER. (Sent with the writes, a COMMIT
//     would still commit them after the point gave up on a write held up
//     by a lock.)
//
// Nothing is acknowledged before COMMIT has returned: if the transaction
// fails, every REGISTER of the batch gets the error (store.ErrUnavailable
// for a fault) and none is acknowledged. A point has batchWriters writers;
// the next batch is collected once the previous one holds its locks and
// has read what it needs, so batches of one point overlap as those of
// several points do.
//
// Measured on one PostgreSQL 15 on the same 2-core machine
// (BENCHMARKS.md, BenchmarkRegisterConcurrent, REGISTERs a second): before
// writers overlapped, every batch held one counter row from its first read
// to its commit, so two points on one database made 0.92 to 1.05 times
// what one point made. With the writers overlapping, one point registers
// 5.2 to 10.2 times what one transaction per REGISTER did at 16 concurrent
// REGISTERs and 4.4 to 12.7 times at 64. With the database a millisecond
// away, as from points on machines of their own, two points together make
// 1.58 to 2.00 times one point at 16 writers each and 1.57 to 2.39 times
// at 64. With the database on the same 2 cores as the points, they make
// about what one point makes: the cores, not the locks, are then the
// ceiling.
//
// Each batch holds up to four advisory locks per REGISTER (maxBatch of
// them), which the server keeps in its shared lock table
// (max_locks_per_transaction times max_connections entries, 6400 by
// default): enough for tens of points' writers at once.
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
// rendezvous_counters keeps the base of the sequence numbers and, over its
// rows, the numbers of registrations and namespaces (rendezvous_namespaces
// has a row for each namespace with registrations), so limits are checked
// without counting the table.
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
// The SQL needs PostgreSQL 13 or later (pg_current_xact_id,
// pg_current_snapshot) and uses its advisory locks; it was tried on
// PostgreSQL 15 only. PostgreSQL-compatible distributed databases
// (CockroachDB, YugabyteDB) lack some of these.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
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

// DefaultDiscoverWait is the default of WithDiscoverWait.
const DefaultDiscoverWait = time.Second

// Option configures Open.
type Option func(*config)

type config struct {
	opTimeout      time.Duration
	migrateTimeout time.Duration
	sweepInterval  time.Duration
	sweepBatch     int
	discoverWait   time.Duration
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

// WithDiscoverWait bounds how long a Discover waits for transactions in
// flight below registrations already committed (see Discover); default
// 1s.
func WithDiscoverWait(d time.Duration) Option { return func(c *config) { c.discoverWait = d } }

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
	// base is the sequence number below which sequence numbers were
	// assigned before they came from transaction ids (see the package doc).
	base int64
	// inflight bounds the registrations that the batches in flight
	// against the database, from every point, may add at once: maxBatch
	// per connection the server accepts.
	inflight int64
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a PostgreSQL URL or key=value
// string, as pgx accepts), creates or migrates the schema, and starts the
// background sweeper. An unreachable database gives an error matching
// store.ErrUnavailable.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg := config{opTimeout: 2 * time.Second, migrateTimeout: time.Minute, sweepInterval: time.Minute, sweepBatch: 1000,
		discoverWait: DefaultDiscoverWait}
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
	var conns int64
	if err := pool.QueryRow(mctx, `SELECT seq, current_setting('max_connections')::bigint FROM rendezvous_counters WHERE id = 1`).Scan(&s.base, &conns); err != nil {
		pool.Close()
		return nil, s.wrap(fmt.Errorf("reading the counters: %w", err))
	}
	s.inflight = conns * maxBatch
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
	// Version 3: writers that overlap (see the package doc). The
	// counter row's seq becomes the base of the sequence numbers taken
	// from transaction ids, the totals are summed over counterShards rows,
	// and a namespace's row only says that it has registrations.
	func(ctx context.Context, tx pgx.Tx) error {
		for _, q := range []string{
			`ALTER TABLE rendezvous_counters DROP CONSTRAINT rendezvous_counters_id_check,
				ADD CONSTRAINT rendezvous_counters_id_check CHECK (id BETWEEN 1 AND ` + strconv.Itoa(counterShards) + `)`,
			`INSERT INTO rendezvous_counters (id, seq, total, namespaces)
				SELECT i, 0, 0, 0 FROM generate_series(2, ` + strconv.Itoa(counterShards) + `) AS i`,
			`ALTER TABLE rendezvous_namespaces DROP COLUMN n`,
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

// counters are the totals, summed over the rows of rendezvous_counters.
type counters struct{ total, namespaces int64 }

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

// registerTx applies one registration at now (Unix nanoseconds) as the
// k-th the transaction of tx writes (its sequence number is base +
// xid<<seqShift + k), in that transaction, which holds the global lock
// exclusively. It returns k. A refusal on a limit is a limitError and
// leaves the transaction usable.
func registerTx(ctx context.Context, tx querier, reg store.Registration, lim store.Limits, n int64, base, k int64) (int64, error) {
	ns, p := []byte(reg.Namespace), []byte(reg.Peer)
	var c counters
	if err := tx.QueryRow(ctx, readCounters).Scan(&c.total, &c.namespaces); err != nil {
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
		if _, err := tx.Exec(ctx, `UPDATE rendezvous_registrations SET seq = `+seqOf("$3")+`, record = $4, expires = $5,
			src = $6, src_addr = $7, src_net = $8
			WHERE ns = $1 AND peer = $2`, ns, p, k, reg.Record, exp, src, srcAddr, srcNet, base); err != nil {
			return 0, err
		}
	} else {
		if _, err := tx.Exec(ctx, `INSERT INTO rendezvous_registrations (ns, peer, record, expires, seq, src, src_addr, src_net)
			VALUES ($1, $2, $3, $4, `+seqOf("$5")+`, $6, $7, $8)`, ns, p, reg.Record, exp, k, src, srcAddr, srcNet, base); err != nil {
			return 0, err
		}
		if _, err := tx.Exec(ctx, addCounts, int32(1), int64(1), [][]byte{ns}); err != nil {
			return 0, err
		}
	}
	return k, nil
}

// Unregister implements store.Store. It overlaps the writers of other
// peers and namespaces: it holds the global lock shared and the locks of
// its peer and namespace exclusively, so that it may remove the
// namespace's row if it leaves it empty.
func (s *Store) Unregister(ctx context.Context, ns string, p peer.ID) error {
	return s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var locks keyLocks
		locks.add(kindPeer, []byte(p), false)
		locks.add(kindNamespace, []byte(ns), false)
		hi, lo, shared := locks.args()
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, globalLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, lockKeys, hi, lo, shared); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM rendezvous_registrations WHERE ns = $1 AND peer = $2 RETURNING ns`, []byte(ns), []byte(p))
		if err != nil {
			return err
		}
		_, _, err = removed(ctx, tx, rows, 1+rand.Int32N(counterShards))
		return err
	})
}

// sweep deletes at most limit rows expired at now and updates the counters
// c. The caller's transaction holds the global lock exclusively. It
// returns the rows deleted.
func sweep(ctx context.Context, tx querier, now int64, limit int, c *counters) (int, error) {
	// = ANY (ARRAY(...)) keeps the plan on the seq index; an IN (subquery)
	// may be planned as a scan of the whole table.
	rows, err := tx.Query(ctx, `DELETE FROM rendezvous_registrations WHERE seq = ANY (ARRAY(
		SELECT seq FROM rendezvous_registrations WHERE expires <= $1 ORDER BY expires LIMIT $2
	)) RETURNING ns`, now, limit)
	if err != nil {
		return 0, err
	}
	d, gone, err := removed(ctx, tx, rows, 1)
	if c != nil {
		c.total -= int64(d)
		c.namespaces -= gone
	}
	return d, err
}

// removed reads the namespaces of the rows deleted, deletes the rows of
// those namespaces left empty, and subtracts what went from counter row
// shard. No writer may add to those namespaces meanwhile: the caller holds
// the global lock exclusively, or the namespace's lock. It returns the
// registrations and namespaces removed.
func removed(ctx context.Context, tx querier, rows pgx.Rows, shard int32) (int, int64, error) {
	per := map[string]bool{}
	var deleted int64
	for rows.Next() {
		var ns []byte
		if err := rows.Scan(&ns); err != nil {
			rows.Close()
			return 0, 0, err
		}
		per[string(ns)] = true
		deleted++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	if deleted == 0 {
		return 0, 0, nil
	}
	names := make([][]byte, 0, len(per))
	for ns := range per {
		names = append(names, []byte(ns))
	}
	tag, err := tx.Exec(ctx, `DELETE FROM rendezvous_namespaces AS t WHERE t.ns = ANY ($1::bytea[])
		AND NOT EXISTS (SELECT 1 FROM rendezvous_registrations r WHERE r.ns = t.ns)`, names)
	if err != nil {
		return 0, 0, err
	}
	gone := tag.RowsAffected()
	if _, err := tx.Exec(ctx, `UPDATE rendezvous_counters SET total = total - $2, namespaces = namespaces - $3 WHERE id = $1`,
		shard, deleted, gone); err != nil {
		return 0, 0, err
	}
	return int(deleted), gone, nil
}

// sweepBatch removes at most limit rows expired at now, in a transaction of
// its own.
func (s *Store) sweepBatch(ctx context.Context, now int64, limit int) (int, error) {
	var d int
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, globalLock); err != nil {
			return err
		}
		var err error
		d, err = sweep(ctx, tx, now, limit, nil)
		return err
	})
	return d, err
}

// Discover implements store.Store. It returns registrations below the
// watermark alone (see the package doc): should the page end there short
// of limit, with registrations beyond it already committed, it reads again
// until the transactions below them have ended, for up to WithDiscoverWait;
// then it returns what lies below the watermark.
func (s *Store) Discover(ctx context.Context, dst []store.Registration, ns string, after uint64, limit int, now time.Time) ([]store.Registration, error) {
	if s.closed.Load() {
		return dst, ErrClosed
	}
	n := horizon.Nanos(now)
	s.horizon.Observe(n)
	if limit <= 0 || after >= math.MaxInt64 {
		return dst, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.opTimeout)
	defer cancel()
	deadline := time.Now().Add(s.cfg.discoverWait)
	wait := time.Millisecond / 2
	for {
		out, held, err := s.discoverOnce(ctx, dst, ns, after, limit, n)
		if err != nil || !held || time.Now().Add(wait).After(deadline) {
			// What lies below the watermark is exact; the rest comes with
			// the next page.
			return out, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return out, nil
		case <-t.C:
		}
		clear(out[len(dst):])
		wait = min(2*wait, 16*time.Millisecond)
	}
}

// discoverOnce reads one page up to the watermark. held reports that it
// ended short of limit at registrations not yet below the watermark.
func (s *Store) discoverOnce(ctx context.Context, dst []store.Registration, ns string, after uint64, limit int, n int64) (_ []store.Registration, held bool, err error) {
	start := len(dst)
	b := &pgx.Batch{}
	// The watermark first: a transaction below it has ended before the
	// page's own snapshot, which therefore holds every row it committed.
	b.Queue(`SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`)
	if ns == "" {
		b.Queue(`SELECT ns, peer, record, expires, seq FROM rendezvous_registrations
			WHERE seq > $1 AND expires > $2 ORDER BY seq LIMIT $3`, int64(after), n, limit)
	} else {
		b.Queue(`SELECT ns, peer, record, expires, seq FROM rendezvous_registrations
			WHERE ns = $1 AND seq > $2 AND expires > $3 ORDER BY seq LIMIT $4`, []byte(ns), int64(after), n, limit)
	}
	br := s.pool.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); err == nil && cerr != nil {
			clear(dst[start:]) // drop what this call appended
			dst, held, err = dst[:start], false, s.wrap(cerr)
		}
	}()
	var xmin int64
	if err := br.QueryRow().Scan(&xmin); err != nil {
		return dst, false, s.wrap(err)
	}
	watermark := s.base + xmin<<seqShift
	rows, err := br.Query()
	if err != nil {
		return dst, false, s.wrap(err)
	}
	defer rows.Close()
	for rows.Next() {
		var nsb, p, record []byte
		var exp, seq int64
		if err := rows.Scan(&nsb, &p, &record, &exp, &seq); err != nil {
			clear(dst[start:]) // drop what this call appended
			return dst[:start], false, s.wrap(err)
		}
		if seq >= watermark {
			held = true
			break
		}
		dst = append(dst, store.Registration{
			Namespace: string(nsb), Peer: peer.ID(p), Record: record,
			Expires: time.Unix(0, exp).UTC(), Seq: uint64(seq),
		})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		clear(dst[start:]) // drop what this call appended
		return dst[:start], false, s.wrap(err)
	}
	return dst, held, nil
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
	if err := s.pool.QueryRow(ctx, `SELECT sum(total)::bigint, sum(namespaces)::bigint FROM rendezvous_counters`).Scan(&total, &nss); err != nil {
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
