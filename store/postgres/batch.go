package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/internal/horizon"
	"github.com/rendezvous-p2p/rendezvous/store/internal/srccol"
)

// maxBatch bounds the REGISTERs of one transaction. Each takes up to four
// advisory locks, which the database keeps in its lock table
// (max_locks_per_transaction times max_connections entries).
const maxBatch = 128

// batchWriters is the number of writer goroutines of a point, and so of its
// batches in flight at once. A writer collects its batch only once the
// previous one holds its locks and has read what it needs (Store.turn), so
// that the batch takes every REGISTER queued until then.
const batchWriters = 2

// op is one REGISTER handed to the writer goroutine.
type op struct {
	ctx context.Context
	reg store.Registration
	lim store.Limits
	now int64 // Unix nanoseconds

	// Results, valid once done is closed.
	seq  int64
	err  error
	done chan struct{}
}

// writeLoop is the point's writer: it takes the REGISTERs queued while the
// previous batch ran, applies them in one transaction and answers each.
func (s *Store) writeLoop() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.quit; cancel() }()
	batch := make([]*op, 0, maxBatch)
	for {
		select {
		case <-s.quit:
			return
		case o := <-s.ops:
			batch = append(batch[:0], o)
		}
		s.turn <- struct{}{}
		// REGISTERs answered by the last batch come back as their
		// goroutines run again: let those that are ready reach the
		// queue, so that they share this batch rather than each start one.
		runtime.Gosched()
	collect:
		for len(batch) < maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break collect
			}
		}
		s.runBatch(ctx, batch)
		clear(batch)
	}
}

// runBatch applies batch and answers every op in it, giving up the turn
// once the batch holds its locks and has read what it needs, or fails. If the transaction
// fails, every op not refused on a limit gets the error: none is
// acknowledged.
func (s *Store) runBatch(ctx context.Context, batch []*op) {
	released := false
	release := func() {
		if !released {
			released = true
			<-s.turn
		}
	}
	defer release()
	live := make([]*op, 0, len(batch))
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.err = s.wrap(err) // abandoned before it started: nothing done
			close(o.done)
			continue
		}
		live = append(live, o)
	}
	if len(live) > 0 {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.opTimeout)
		err := s.applyBatch(ctx, live, release)
		cancel()
		if err != nil {
			err = s.wrap(fmt.Errorf("register batch of %d: %w", len(live), err))
			for _, o := range live {
				var lim limitError
				if !errors.As(o.err, &lim) {
					o.err = err
				}
				o.seq = 0
			}
		}
		for _, o := range live {
			var lim limitError
			if errors.As(o.err, &lim) {
				o.err = lim.error
			}
			close(o.done)
		}
	}
}

// key names a registration.
type key struct{ ns, peer string }

// row is what the limits read of a registration: when it expires and the
// prefixes of its source ("" for none).
type row struct {
	exp         int64
	addr, netwk string
}

// write is the final state of one registration written by a batch.
type write struct {
	key
	k                    int64 // the sequence number is base + xid<<seqShift + k
	record               []byte
	exp                  int64
	src, srcAddr, srcNet []byte
	update               bool // the row is there: UPDATE, not INSERT
}

// baseQuery reads, for each REGISTER of a batch (the arrays hold one entry
// each, in order), what the limit checks of registerTx read: the existing
// row of its (ns, peer), the live registrations of its peer and of its
// source's prefixes (NULL counts nothing), and whether its namespace has
// rows.
const baseQuery = `SELECT x.i, r.expires, r.src_addr, r.src_net,
	(SELECT count(*) FROM rendezvous_registrations WHERE peer = x.cp AND expires > x.now),
	(SELECT count(*) FROM rendezvous_registrations WHERE src_addr = x.ca AND expires > x.now),
	(SELECT count(*) FROM rendezvous_registrations WHERE src_net = x.cn AND expires > x.now),
	EXISTS (SELECT 1 FROM rendezvous_namespaces WHERE ns = x.ns)
FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bytea[], $5::bytea[], $6::bytea[])
	WITH ORDINALITY AS x (ns, peer, now, cp, ca, cn, i)
LEFT JOIN rendezvous_registrations r ON r.ns = x.ns AND r.peer = x.peer
ORDER BY x.i`

// indexPlans makes the statements of the transaction that runs it find
// rows through their indexes, whatever the planner believes of the table's
// size. A plan is cached with the statement and kept until the table's
// statistics change: one made while the table was small (a new schema, a
// point's first batches) would join a batch's keys against a scan of the
// whole table, at every batch, for as long as the statement stays cached.
// A statement with no index to use (the totals' 16 rows) still runs, at a
// cost the planner counts as huge: jit stays off so that this does not
// compile it.
const indexPlans = `SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
	set_config('enable_mergejoin', 'off', true), set_config('jit', 'off', true)`

// applyBatch applies ops in one transaction as if they came one after the
// other in order: each is checked against the limits as they stand after
// the ones before it. It reads the database once for the whole batch and
// applies the changes of the earlier ops of the batch in memory. It first
// tries the batch as an overlapping writer (shared global lock, a lock of
// each peer, source prefix and namespace it touches); if the totals are
// within reach of a global limit it rolls back and applies the batch again
// alone (exclusive global lock), where an op that needs expired rows
// removed to be decided and the ones after it go one at a time through
// registerTx. On success every op has its seq or its limitError. It calls
// started once the batch holds its locks and has read what it needs, so
// that the next batch may be collected and overlap it.
func (s *Store) applyBatch(ctx context.Context, ops []*op, started func()) (err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.abort(conn)
		}
		conn.Release()
	}()
	err = s.applyIn(ctx, conn, ops, false, started)
	if errors.Is(err, errNearLimit) {
		s.abort(conn)
		for _, o := range ops {
			o.seq, o.err = 0, nil
		}
		err = s.applyIn(ctx, conn, ops, true, started)
	}
	return err
}

// errNearLimit makes an overlapping batch start again alone.
var errNearLimit = errors.New("near a global limit")

// applyIn runs the transaction of applyBatch on conn, alone (holding the
// global lock exclusively) or overlapping others. Overlapping, it returns
// errNearLimit, with the transaction still open, if the batch must be
// applied alone.
func (s *Store) applyIn(ctx context.Context, conn *pgxpool.Conn, ops []*op, alone bool, started func()) error {
	k := len(ops)
	nss, peers, cps, cas, cns := make([][]byte, k), make([][]byte, k), make([][]byte, k), make([][]byte, k), make([][]byte, k)
	nows := make([]int64, k)
	var locks keyLocks
	for i, o := range ops {
		nss[i], peers[i], nows[i] = []byte(o.reg.Namespace), []byte(o.reg.Peer), o.now
		if o.lim.MaxRegistrationsPerPeer > 0 {
			cps[i] = peers[i]
		}
		locks.add(kindPeer, peers[i], false)
		locks.add(kindNamespace, nss[i], true)
		if o.lim.CountsSources() {
			_, cas[i], cns[i] = srccol.Columns(o.reg.Source)
			if cas[i] != nil {
				locks.add(kindAddr, cas[i], false)
				locks.add(kindNet, cns[i], false)
			}
		}
	}
	var c counters
	type base struct {
		old                   *row
		peerLive, inAddr, inN int64
		nsExists              bool
	}
	bases := make([]base, k)
	b := &pgx.Batch{}
	b.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
	b.Queue(indexPlans)
	if alone {
		b.Queue(`SELECT pg_advisory_xact_lock($1)`, globalLock)
	} else {
		b.Queue(`SELECT pg_advisory_xact_lock_shared($1)`, globalLock)
		hi, lo, shared := locks.args()
		b.Queue(lockKeys, hi, lo, shared)
	}
	b.Queue(readCounters)
	b.Queue(baseQuery, nss, peers, nows, cps, cas, cns)
	br := conn.SendBatch(ctx, b)
	execs := 3 // BEGIN, indexPlans, the global lock
	if !alone {
		execs = 4 // and the keys' locks
	}
	for range execs {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return err
		}
	}
	if err := br.QueryRow().Scan(&c.total, &c.namespaces); err != nil {
		_ = br.Close()
		return err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return err
	}
	for rows.Next() {
		var i int64
		var exp *int64
		var addr, netwk []byte
		var bs base
		if err := rows.Scan(&i, &exp, &addr, &netwk, &bs.peerLive, &bs.inAddr, &bs.inN, &bs.nsExists); err != nil {
			rows.Close()
			_ = br.Close()
			return err
		}
		if exp != nil {
			bs.old = &row{exp: *exp, addr: string(addr), netwk: string(netwk)}
		}
		bases[i-1] = bs
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		_ = br.Close()
		return err
	}
	if err := br.Close(); err != nil {
		return err
	}
	if !alone {
		for _, o := range ops {
			if !s.farFromLimits(o.lim, c) {
				return errNearLimit
			}
		}
	}
	started()
	// The k-th registration written gets sequence number
	// s.base + xid<<seqShift + k (see the package doc): the writes compute
	// it, once they have made the transaction's id.
	var seqs seqAllocator

	// The rows as the batch has left them so far, against the rows as
	// they were, for the keys the batch has written.
	was := map[key]*row{}
	is := map[key]*row{}
	var touched []key
	nsExists := map[string]bool{}
	writes := map[key]*write{}
	var order []key
	// delta is how the writes so far change a count, at time n, of the
	// live rows that match.
	delta := func(n int64, match func(key, *row) bool) int64 {
		var d int64
		for _, k := range touched {
			if r := is[k]; r.exp > n && match(k, r) {
				d++
			}
			if r := was[k]; r != nil && r.exp > n && match(k, r) {
				d--
			}
		}
		return d
	}
	rest := len(ops)
	for j, o := range ops {
		reg, lim, n := o.reg, o.lim, o.now
		kj := key{reg.Namespace, string(reg.Peer)}
		cur, inBatch := is[kj]
		if !inBatch {
			cur = bases[j].old
		}
		if _, ok := nsExists[reg.Namespace]; !ok {
			nsExists[reg.Namespace] = bases[j].nsExists
		}
		existing := cur != nil
		if !existing || cur.exp <= n {
			// A new live pair: the limits apply.
			peerLive := bases[j].peerLive + delta(n, func(k key, _ *row) bool { return k.peer == kj.peer })
			if lim.MaxRegistrationsPerPeer > 0 && peerLive >= int64(lim.MaxRegistrationsPerPeer) {
				o.err = limitError{store.ErrPeerLimit}
				continue
			}
			var inAddr, inNet int64
			if cas[j] != nil {
				a, nw := string(cas[j]), string(cns[j])
				inAddr = bases[j].inAddr + delta(n, func(_ key, r *row) bool { return r.addr == a })
				inNet = bases[j].inN + delta(n, func(_ key, r *row) bool { return r.netwk == nw })
			}
			if err := lim.CheckQuota(reg.Source, int(inAddr), int(inNet)); err != nil {
				o.err = limitError{err}
				continue
			}
			st := store.Stats{Registrations: int(c.total), Namespaces: int(c.namespaces)}
			crowded := lim.MayCrowd(reg.Source, int(inNet)) &&
				(lim.Crowded(st, false) || (lim.Crowded(st, true) && !nsExists[reg.Namespace]))
			if crowded || (lim.MaxRegistrations > 0 && c.total >= int64(lim.MaxRegistrations)) ||
				(lim.MaxNamespaces > 0 && c.namespaces >= int64(lim.MaxNamespaces)) {
				if !alone {
					// Cannot happen far from the limits; alone is safe.
					return errNearLimit
				}
				// Deciding needs what expired removed: registerTx does
				// it, from here on.
				rest = j
				break
			}
		}
		seq := seqs.take()
		src, srcAddr, srcNet := srccol.Columns(reg.Source)
		w := writes[kj]
		if w == nil {
			w = &write{key: kj, update: bases[j].old != nil}
			writes[kj] = w
			order = append(order, kj)
		}
		w.k, w.record, w.exp, w.src, w.srcAddr, w.srcNet = seq, reg.Record, horizon.Nanos(reg.Expires), src, srcAddr, srcNet
		if !existing {
			c.total++
			if !nsExists[reg.Namespace] {
				c.namespaces++
				nsExists[reg.Namespace] = true
			}
		}
		if !inBatch {
			was[kj] = bases[j].old
			touched = append(touched, kj)
		}
		is[kj] = &row{exp: w.exp, addr: string(srcAddr), netwk: string(srcNet)}
		o.seq = seq
	}

	b = &pgx.Batch{}
	shard := int32(1)
	if !alone {
		shard = 1 + rand.Int32N(counterShards)
	}
	xid := int64(-1)
	if queued := queueWrites(b, order, writes, shard, s.base); queued > 0 {
		b.Queue(`SELECT pg_current_xact_id()::text::bigint`)
		br := conn.SendBatch(ctx, b)
		for range queued {
			if _, err := br.Exec(); err != nil {
				_ = br.Close()
				return err
			}
		}
		if err := br.QueryRow().Scan(&xid); err != nil {
			_ = br.Close()
			return err
		}
		if err := br.Close(); err != nil {
			return err
		}
	}
	for _, o := range ops[rest:] {
		seq, err := registerTx(ctx, conn, o.reg, o.lim, o.now, s.base, seqs.take())
		var lim limitError
		switch {
		case errors.As(err, &lim):
			o.err = lim
		case err != nil:
			return err
		default:
			o.seq = seq
		}
	}
	if seqs.next > 0 {
		if xid < 0 {
			if err := conn.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&xid); err != nil {
				return err
			}
		}
		for _, o := range ops {
			if o.err == nil {
				o.seq += s.base + xid<<seqShift
			}
		}
	}
	// COMMIT goes only once every write has succeeded in time: sent with
	// them, it would still commit them after a timeout here, once whatever
	// held them up let go.
	if err := ctx.Err(); err != nil {
		return err
	}
	tag, err := conn.Exec(ctx, `COMMIT`)
	if err == nil && tag.String() != "COMMIT" {
		err = fmt.Errorf("transaction ended by %s", tag)
	}
	return err
}

// farFromLimits reports whether an overlapping batch may decide lim with the
// totals c it read: whatever the batches in flight add (at most
// s.inflight), no global limit or crowding threshold of lim can be reached.
func (s *Store) farFromLimits(lim store.Limits, c counters) bool {
	fits := func(limit int, have int64) bool { return limit <= 0 || have+s.inflight < int64(limit) }
	ok := fits(lim.MaxRegistrations, c.total) && fits(lim.MaxNamespaces, c.namespaces)
	if lim.CrowdedShare > 0 {
		ok = ok && fits(lim.CrowdedRegistrations, c.total) && fits(lim.CrowdedNamespaces, c.namespaces)
	}
	return ok
}

// seqAllocator numbers the registrations a transaction writes, from 1.
type seqAllocator struct{ next int64 }

func (a *seqAllocator) take() int64 {
	a.next++
	return a.next
}

// queueWrites queues the statements that write the registrations of order,
// add the namespaces new to the store, and add what they add to the counter
// row shard. It returns the number of statements queued.
func queueWrites(b *pgx.Batch, order []key, writes map[key]*write, shard int32, base int64) int {
	var ins, upd []*write
	newNS := map[string]bool{}
	for _, k := range order {
		w := writes[k]
		if w.update {
			upd = append(upd, w)
		} else {
			ins = append(ins, w)
			newNS[k.ns] = true
		}
	}
	cols := func(ws []*write) []any {
		nss, peers, records, srcs, addrs, nets := make([][]byte, len(ws)), make([][]byte, len(ws)), make([][]byte, len(ws)),
			make([][]byte, len(ws)), make([][]byte, len(ws)), make([][]byte, len(ws))
		ks, exps := make([]int64, len(ws)), make([]int64, len(ws))
		for i, w := range ws {
			nss[i], peers[i], records[i], exps[i], ks[i] = []byte(w.ns), []byte(w.peer), w.record, w.exp, w.k
			srcs[i], addrs[i], nets[i] = w.src, w.srcAddr, w.srcNet
		}
		return []any{nss, peers, records, exps, ks, srcs, addrs, nets, base}
	}
	if len(upd) > 0 {
		b.Queue(updateRegs, cols(upd)...)
	}
	if len(ins) > 0 {
		b.Queue(`INSERT INTO rendezvous_registrations (ns, peer, record, expires, seq, src, src_addr, src_net)
			SELECT x.ns, x.peer, x.record, x.expires, `+seqOf("x.k")+`, x.src, x.src_addr, x.src_net
			FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bytea[], $8::bytea[])
				AS x (ns, peer, record, expires, k, src, src_addr, src_net)`,
			cols(ins)...)
		// In the order of their bytes, as every writer: two writers that
		// add the same new namespaces wait for each other in one order.
		names := make([][]byte, 0, len(newNS))
		for ns := range newNS {
			names = append(names, []byte(ns))
		}
		slices.SortFunc(names, bytes.Compare)
		b.Queue(addCounts, shard, int64(len(ins)), names)
	}
	return b.Len()
}

// updateRegs writes the registrations of a batch whose rows are there.
var updateRegs = `UPDATE rendezvous_registrations AS r SET seq = ` + seqOf("x.k") + `, record = x.record, expires = x.expires,
	src = x.src, src_addr = x.src_addr, src_net = x.src_net
	FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bytea[], $8::bytea[])
		AS x (ns, peer, record, expires, k, src, src_addr, src_net)
	WHERE r.ns = x.ns AND r.peer = x.peer`

// addCounts adds the namespaces $3 that are new to the store and adds
// registrations ($2) and new namespaces to counter row $1.
const addCounts = `WITH n AS (
	INSERT INTO rendezvous_namespaces (ns) SELECT * FROM unnest($3::bytea[]) ON CONFLICT DO NOTHING RETURNING 1
)
UPDATE rendezvous_counters SET total = total + $2, namespaces = namespaces + (SELECT count(*) FROM n) WHERE id = $1`

// abort rolls back the transaction of conn, or closes conn if that fails,
// so that the pool does not hand out a connection inside a transaction.
func (s *Store) abort(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.opTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, `ROLLBACK`); err != nil {
		_ = conn.Conn().Close(ctx)
	}
}
