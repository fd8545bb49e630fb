package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/internal/horizon"
	"github.com/rendezvous-p2p/rendezvous/store/internal/srccol"
)

type opKind int

const (
	opRegister opKind = iota
	opUnregister
	opSweep
)

// op is one write handed to the writer goroutine.
type op struct {
	kind   opKind
	ctx    context.Context
	reg    store.Registration // Register; Namespace and Peer for Unregister
	limits store.Limits
	now    int64 // Unix nanoseconds
	limit  int   // sweep batch

	// Results, valid once done is closed.
	seq     uint64
	deleted int
	err     error
	done    chan struct{}
}

// meta mirrors the meta row within a write transaction.
type meta struct {
	seq, total, namespaces int64
	// seqLimit bounds the sequence numbers a commit that is not synced may
	// assign (see reserve).
	seqLimit int64
}

// defaultSeqReserve is how far reserve moves the sequence limit past the
// sequence: a synced commit per that many REGISTERs, and as many numbers
// skipped at each Open.
const defaultSeqReserve = 1 << 20

// errUnreserved is returned by register, in a store whose commits are not
// synced, for a sequence number past the reserved limit.
var errUnreserved = errors.New("sequence number past the reserved limit")

// writer owns the write connection and its prepared statements. Only the
// writer goroutine uses it.
type writer struct {
	conn  *sql.Conn
	meta  meta
	stmts []*sql.Stmt
	// synced is whether every commit is synced to disk before it is seen
	// (the connection's synchronous is FULL or EXTRA); without it,
	// sequence numbers are reserved (see reserve), also when the writer
	// syncs the log after each commit (wal).
	synced bool
	// syncMode is the connection's PRAGMA synchronous, restored by reserve.
	syncMode string
	// seqReserve is how far reserve moves the limit.
	seqReserve int64

	getKey, peerAll, srcAll, nsExists                 *sql.Stmt
	insert, replace, refresh, refreshFrom, remove     *sql.Stmt
	sweep, nsIncr, nsDecr, nsDelete, putMeta, getMeta *sql.Stmt
	begin, commit                                     *sql.Stmt
	// wal, if not nil, is synced after each commit, which the connection
	// makes under synchronous NORMAL (see walSync).
	wal *walSync
}

func newWriter(ctx context.Context, conn *sql.Conn, syncMode string, seqReserve int64) (*writer, error) {
	w := &writer{conn: conn, syncMode: syncMode, synced: syncMode != "NORMAL", seqReserve: seqReserve}
	var err error
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = conn.PrepareContext(ctx, q)
		if err == nil {
			w.stmts = append(w.stmts, st)
		}
		return st
	}
	w.getKey = prep(`SELECT expires FROM regs WHERE ns = ? AND peer = ?`)
	// The peer and source counts read their indexes alone: they include
	// expired rows not yet removed.
	w.peerAll = prep(`SELECT count(*) FROM regs WHERE peer = ?`)
	w.srcAll = prep(`SELECT
		(SELECT count(*) FROM regs WHERE src_addr = ?),
		(SELECT count(*) FROM regs WHERE src_net = ?)`)
	w.nsExists = prep(`SELECT count(*) FROM namespaces WHERE ns = ?`)
	w.insert = prep(`INSERT INTO regs (seq, ns, peer, record, expires, src, src_addr, src_net) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	w.replace = prep(`UPDATE regs SET seq = ?, record = ?, expires = ?, src = ?, src_addr = ?, src_net = ? WHERE ns = ? AND peer = ?`)
	// A refresh from the same source sets no source column, so that SQLite
	// leaves the source indexes alone; refreshFrom moves it to a new source.
	w.refresh = prep(`UPDATE regs SET seq = ?, record = ?, expires = ? WHERE ns = ? AND peer = ? AND expires > ? AND src IS ?`)
	w.refreshFrom = prep(`UPDATE regs SET seq = ?, record = ?, expires = ?, src = ?, src_addr = ?, src_net = ? WHERE ns = ? AND peer = ? AND expires > ?`)
	w.remove = prep(`DELETE FROM regs WHERE ns = ? AND peer = ? RETURNING ns`)
	w.sweep = prep(`DELETE FROM regs WHERE id IN
		(SELECT id FROM regs WHERE expires <= ? ORDER BY expires LIMIT ?) RETURNING ns`)
	w.nsIncr = prep(`INSERT INTO namespaces (ns, n) VALUES (?, 1)
		ON CONFLICT (ns) DO UPDATE SET n = n + 1 RETURNING n`)
	w.nsDecr = prep(`UPDATE namespaces SET n = n - ? WHERE ns = ? RETURNING n`)
	w.nsDelete = prep(`DELETE FROM namespaces WHERE ns = ?`)
	w.putMeta = prep(`UPDATE meta SET seq = ?, total = ?, namespaces = ? WHERE id = 1`)
	w.getMeta = prep(`SELECT seq, total, namespaces, seq_limit FROM meta WHERE id = 1`)
	w.begin = prep(`BEGIN IMMEDIATE`)
	w.commit = prep(`COMMIT`)
	if err == nil {
		err = w.load()
	}
	if err != nil {
		w.close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return w, nil
}

func (w *writer) load() error {
	return w.getMeta.QueryRow().Scan(&w.meta.seq, &w.meta.total, &w.meta.namespaces, &w.meta.seqLimit)
}

// reserve moves the sequence limit w.seqReserve past the sequence, in a
// transaction synced to disk before it is seen.
//
// A commit that is not synced first (synchronous NORMAL, or FULL synced by
// the writer after the commit) is seen by readers, and
// its sequence numbers by DISCOVERs and their cookies, before it is on disk;
// a power loss may then take it back, and a sequence resumed from what is on
// disk would number new registrations below cookies already handed out,
// which would pass over them. Such commits assign numbers only up to a limit
// that is on disk first, and Open resumes the sequence at that limit.
func (w *writer) reserve() (err error) {
	ctx := context.Background()
	if _, err := w.conn.ExecContext(ctx, "PRAGMA synchronous = FULL"); err != nil {
		return err
	}
	defer func() {
		if _, e := w.conn.ExecContext(ctx, "PRAGMA synchronous = "+w.syncMode); e != nil && err == nil {
			err = e
		}
	}()
	return w.inTx(func() error {
		if err := w.load(); err != nil {
			return err
		}
		limit := int64(math.MaxInt64)
		if w.meta.seq < math.MaxInt64-w.seqReserve {
			limit = w.meta.seq + w.seqReserve
		}
		_, err := w.conn.ExecContext(ctx, `UPDATE meta SET seq_limit = ? WHERE id = 1`, limit)
		return err
	})
}

func (w *writer) close() {
	for _, st := range w.stmts {
		_ = st.Close()
	}
	_ = w.conn.Close()
	if w.wal != nil {
		_ = w.wal.close()
	}
}

// errLimit marks the errors of a request that leave the transaction usable.
type errLimit struct{ error }

func (e errLimit) Unwrap() error { return e.error }

// run applies batch in one transaction and answers every op in it.
func (w *writer) run(batch []*op) {
	err := w.try(batch)
	if errors.Is(err, errUnreserved) {
		// Rolled back: reserve more sequence numbers and apply the batch
		// again, from the start.
		for _, o := range batch {
			o.err, o.seq, o.deleted = nil, 0, 0
		}
		if err = w.reserve(); err == nil {
			err = w.try(batch)
		}
	}
	for _, o := range batch {
		if err != nil {
			if o.err == nil {
				o.err = wrapErr(err)
			}
			o.seq = 0
		}
		close(o.done)
	}
}

// try applies batch in one transaction. When it returns an error the
// transaction is rolled back, and the results set in batch are void.
func (w *writer) try(batch []*op) error {
	return w.inTx(func() error { return w.applyAll(batch) })
}

// inTx runs f in a write transaction, committed if f returns nil and rolled
// back otherwise.
func (w *writer) inTx(f func() error) error {
	if _, err := w.begin.Exec(); err != nil {
		return err
	}
	err := f()
	if err == nil {
		_, err = w.commit.Exec()
	}
	if err != nil {
		_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
		return err
	}
	if w.wal != nil {
		// Committed, and seen by readers (the sequence reservation keeps
		// cookies exact), but not answered until on disk. A failed sync
		// fails the batch: none of it is acknowledged.
		return w.wal.sync()
	}
	return nil
}

// applyAll applies batch within the transaction.
func (w *writer) applyAll(batch []*op) error {
	// Another process may have written to the file since the last batch:
	// read the counters inside the write lock.
	if err := w.load(); err != nil {
		return err
	}
	saved := w.meta
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.err = err // abandoned before it started: do nothing
			continue
		}
		err := w.apply(o)
		var lim errLimit
		switch {
		case err == nil:
		case errors.As(err, &lim):
			o.err = lim.error
		default:
			return err
		}
	}
	if w.meta != saved {
		if _, err := w.putMeta.Exec(w.meta.seq, w.meta.total, w.meta.namespaces); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) apply(o *op) error {
	switch o.kind {
	case opRegister:
		return w.register(o)
	case opUnregister:
		rows, err := w.remove.Query(o.reg.Namespace, []byte(o.reg.Peer))
		if err != nil {
			return err
		}
		return w.removed(rows, &o.deleted)
	case opSweep:
		return w.sweepTo(o.now, o.limit, &o.deleted)
	}
	return fmt.Errorf("unknown op %d", o.kind)
}

func (w *writer) register(o *op) error {
	r, lim, now := o.reg, o.limits, o.now
	p := []byte(r.Peer)
	if w.meta.seq == math.MaxInt64 {
		return errors.New("sequence exhausted")
	}
	if !w.synced && w.meta.seq >= w.meta.seqLimit {
		return errUnreserved
	}
	src, srcAddr, srcNet := srccol.Columns(r.Source)
	// A refresh of a live registration, most REGISTERs, is one statement
	// (two when its source changed): no limit applies to it.
	exp := horizon.Nanos(r.Expires)
	seq := w.meta.seq + 1
	done, err := affectedOne(w.refresh.Exec(seq, r.Record, exp, r.Namespace, p, now, src))
	if err == nil && !done {
		done, err = affectedOne(w.refreshFrom.Exec(seq, r.Record, exp, src, srcAddr, srcNet, r.Namespace, p, now))
	}
	if err != nil {
		return err
	}
	if done {
		w.meta.seq = seq
		o.seq = uint64(seq)
		return nil
	}
	var old int64
	existing := true
	switch err := w.getKey.QueryRow(r.Namespace, p).Scan(&old); {
	case errors.Is(err, sql.ErrNoRows):
		existing = false
	case err != nil:
		return err
	}
	if !existing || old <= now {
		// A new live pair: the limits apply. The peer and source counts
		// include expired rows not yet removed; the limits only refuse
		// more as counts grow, so when these counts pass, the live ones
		// do too, and otherwise what expired is removed and they are
		// read again, exact.
		countsSources := srcAddr != nil && lim.CountsSources()
		var inPeer, inAddr, inNet int
		count := func() error {
			if lim.MaxRegistrationsPerPeer > 0 {
				if err := w.peerAll.QueryRow(p).Scan(&inPeer); err != nil {
					return err
				}
			}
			if countsSources {
				if err := w.srcAll.QueryRow(srcAddr, srcNet).Scan(&inAddr, &inNet); err != nil {
					return err
				}
			}
			return nil
		}
		if err := count(); err != nil {
			return err
		}
		if (lim.MaxRegistrationsPerPeer > 0 && inPeer >= lim.MaxRegistrationsPerPeer) ||
			(countsSources && (lim.CheckQuota(r.Source, inAddr, inNet) != nil || lim.MayCrowd(r.Source, inNet))) {
			if err := w.sweepAll(now); err != nil {
				return err
			}
			existing = existing && old > now // an expired one is gone now
			if err := count(); err != nil {
				return err
			}
		}
		if lim.MaxRegistrationsPerPeer > 0 && inPeer >= lim.MaxRegistrationsPerPeer {
			return errLimit{store.ErrPeerLimit}
		}
		if countsSources {
			if err := lim.CheckQuota(r.Source, inAddr, inNet); err != nil {
				return errLimit{err}
			}
		}
		crowded := func() (bool, error) {
			if !lim.MayCrowd(r.Source, inNet) {
				return false, nil
			}
			st := store.Stats{Registrations: int(w.meta.total), Namespaces: int(w.meta.namespaces)}
			switch {
			case lim.Crowded(st, false):
				return true, nil
			case lim.Crowded(st, true):
				return w.isNewNamespace(r.Namespace)
			}
			return false, nil
		}
		// The counters include expired rows not yet removed: when they
		// say a limit is reached, remove what expired and look again.
		isCrowded, err := crowded()
		if err != nil {
			return err
		}
		if isCrowded || (lim.MaxRegistrations > 0 && w.meta.total >= int64(lim.MaxRegistrations)) ||
			(lim.MaxNamespaces > 0 && w.meta.namespaces >= int64(lim.MaxNamespaces)) {
			if err := w.sweepAll(now); err != nil {
				return err
			}
			existing = existing && old > now // an expired one is gone now
			if lim.MaxRegistrations > 0 && w.meta.total >= int64(lim.MaxRegistrations) {
				return errLimit{store.ErrFull}
			}
			if lim.MaxNamespaces > 0 && w.meta.namespaces >= int64(lim.MaxNamespaces) {
				isNew, err := w.isNewNamespace(r.Namespace)
				if err != nil {
					return err
				}
				if isNew {
					return errLimit{store.ErrFull}
				}
			}
			if isCrowded, err = crowded(); err != nil {
				return err
			} else if isCrowded {
				return errLimit{store.ErrCrowded}
			}
		}
	}
	if existing {
		if _, err := w.replace.Exec(seq, r.Record, exp, src, srcAddr, srcNet, r.Namespace, p); err != nil {
			return err
		}
	} else {
		if _, err := w.insert.Exec(seq, r.Namespace, p, r.Record, exp, src, srcAddr, srcNet); err != nil {
			return err
		}
		var n int64
		if err := w.nsIncr.QueryRow(r.Namespace).Scan(&n); err != nil {
			return err
		}
		w.meta.total++
		if n == 1 {
			w.meta.namespaces++
		}
	}
	w.meta.seq = seq
	o.seq = uint64(seq)
	return nil
}

// affectedOne reports whether the statement that returned res, err changed
// one row.
func affectedOne(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// isNewNamespace reports whether ns holds no row.
func (w *writer) isNewNamespace(ns string) (bool, error) {
	var n int
	if err := w.nsExists.QueryRow(ns).Scan(&n); err != nil {
		return false, err
	}
	return n == 0, nil
}

// sweepAll deletes every row expired at now.
func (w *writer) sweepAll(now int64) error {
	const chunk = 10000
	for {
		var d int
		if err := w.sweepTo(now, chunk, &d); err != nil {
			return err
		}
		if d < chunk {
			return nil
		}
	}
}

// sweepTo deletes at most limit rows expired at now, adding their number to
// *deleted.
func (w *writer) sweepTo(now int64, limit int, deleted *int) error {
	rows, err := w.sweep.Query(now, limit)
	if err != nil {
		return err
	}
	return w.removed(rows, deleted)
}

// removed reads the namespaces of deleted rows and updates the counters.
func (w *writer) removed(rows *sql.Rows, deleted *int) error {
	per := map[string]int64{}
	for rows.Next() {
		var ns string
		if err := rows.Scan(&ns); err != nil {
			_ = rows.Close()
			return err
		}
		per[ns]++
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for ns, k := range per {
		var n int64
		if err := w.nsDecr.QueryRow(k, ns).Scan(&n); err != nil {
			return err
		}
		if n <= 0 {
			if _, err := w.nsDelete.Exec(ns); err != nil {
				return err
			}
			w.meta.namespaces--
		}
		w.meta.total -= k
		*deleted += int(k)
	}
	return nil
}
