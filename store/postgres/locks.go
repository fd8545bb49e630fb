package postgres

import (
	"hash/fnv"
	"slices"
	"strconv"
)

// globalLock is the pg_advisory_xact_lock key that writers hold shared
// while they overlap, and that a writer near a global limit, the sweeper
// and Stats hold exclusively (see the package doc). Keys of the two-int
// form (keyLocks) are a key space apart from it.
const globalLock int64 = 0x72656e642d676c62 // "rend-glb"

// counterShards is the number of rows of rendezvous_counters whose sums are
// the totals: an overlapping batch adds to one row picked at random, so
// that two batches rarely wait for each other's commit there.
const counterShards = 16

// seqShift places a transaction's sequence numbers: the k-th registration
// written by transaction xid gets base + xid<<seqShift + k, with k below
// 1<<seqShift (maxBatch and the registerTx that follow it in one batch).
const seqShift = 9

// Kinds of the keys writers lock.
const (
	kindPeer byte = iota + 1
	kindNamespace
	kindAddr
	kindNet
)

// keyLocks are the advisory locks of a batch: each key once, exclusive if
// any op needs it so, in the order of the keys, which every writer follows
// so that none waits for another in a cycle.
type keyLocks struct {
	keys map[int64]bool // key -> shared
}

// add asks for the lock of b, of kind kind, shared or exclusive.
func (l *keyLocks) add(kind byte, b []byte, shared bool) {
	if l.keys == nil {
		l.keys = map[int64]bool{}
	}
	k := lockKey(kind, b)
	if sh, ok := l.keys[k]; ok {
		shared = shared && sh
	}
	l.keys[k] = shared
}

// args returns the arguments of lockKeys: the keys in order, each split
// into two halves, and whether each is shared.
func (l *keyLocks) args() (hi, lo []int32, shared []bool) {
	keys := make([]int64, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		hi, lo, shared = append(hi, int32(k>>32)), append(lo, int32(k)), append(shared, l.keys[k])
	}
	return hi, lo, shared
}

// lockKey is the 64-bit FNV-1a hash of kind followed by b: the same in
// every point.
func lockKey(kind byte, b []byte) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte{kind})
	_, _ = h.Write(b)
	return int64(h.Sum64())
}

// lockKeys takes the advisory locks of keyLocks.args, in the order given.
const lockKeys = `SELECT CASE WHEN x.shared THEN pg_advisory_xact_lock_shared(x.hi, x.lo)
	ELSE pg_advisory_xact_lock(x.hi, x.lo) END
FROM unnest($1::int4[], $2::int4[], $3::bool[]) AS x (hi, lo, shared)`

// readCounters reads the totals.
const readCounters = `SELECT coalesce(sum(total), 0)::bigint, coalesce(sum(namespaces), 0)::bigint FROM rendezvous_counters`

// seqOf is the SQL of the sequence number of the k-th registration that
// the transaction writes, given base as parameter $9: writing it assigns
// the transaction its id, and no sooner, so that a transaction waiting for
// a lock holds no watermark back.
func seqOf(k string) string {
	return "($9::bigint + (pg_current_xact_id()::text::bigint << " + strconv.Itoa(seqShift) + ") + " + k + ")"
}
