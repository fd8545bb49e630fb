package memory

import (
	"cmp"
	"slices"

	"github.com/google/btree"
)

// chunkCap is the most entries a chunk of a seqList holds: 64 entries of 40
// bytes, 2.5 KB.
const chunkCap = 64

// chunkMerge is the size under which a chunk that lost an entry is merged
// with a neighbour that has room for it. No two neighbouring chunks both
// hold fewer, so chunks hold chunkMerge/2 entries or more on average.
const chunkMerge = chunkCap / 4

// chunk is a run of entries of a seqList, in increasing sequence order.
// Its slice grows from small to chunkCap, so that a namespace of a few
// registrations holds little.
type chunk struct {
	entries []entry
}

// index is where seq is, or would be, in c.
func (c *chunk) index(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(c.entries, seq, func(e entry, seq uint64) int { return cmp.Compare(e.seq, seq) })
}

// fence is a chunk's place in the index of a seqList. Every entry of the
// chunk has a sequence number of at least seq, and below the next chunk's
// fence.
type fence struct {
	seq uint64
	c   *chunk
}

func byFence(a, b fence) bool { return a.seq < b.seq }

// chunkPoolSize is how many emptied chunks a chunkPool keeps.
const chunkPoolSize = 16

// chunkPool keeps full-size chunks that emptied, for the lists of one store
// to start new chunks with: as refreshes empty chunks at the front of a list
// and fill new ones at its end, the same few chunks go round.
type chunkPool struct {
	free []*chunk
}

// get returns an empty chunk of capacity chunkCap.
func (p *chunkPool) get() *chunk {
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free = p.free[:n-1]
		return c
	}
	return &chunk{entries: make([]entry, 0, chunkCap)}
}

// put takes back c, which no list holds any more.
func (p *chunkPool) put(c *chunk) {
	if cap(c.entries) != chunkCap || len(p.free) == chunkPoolSize {
		return
	}
	clear(c.entries) // what was merged elsewhere is still referred to here
	c.entries = c.entries[:0]
	p.free = append(p.free, c)
}

// seqList holds entries in increasing sequence order: chunks of up to
// chunkCap contiguous entries, found through a B-tree of their fences.
//
// Registrations get ever greater sequence numbers, so entries only ever join
// at the end, filling each chunk before the next is started. Finding an
// entry costs a descent of the small fence index, then a binary search of
// one chunk; reading k entries in order from there touches k/chunkCap + 1
// chunks or so. A chunk that empties leaves the index; one that falls under
// chunkMerge entries joins a neighbour with room for it.
type seqList struct {
	fences *btree.BTreeG[fence]
	chunks *chunkPool
	n      int
}

func newSeqList(free *btree.FreeListG[fence], chunks *chunkPool) *seqList {
	return &seqList{fences: btree.NewWithFreeListG(btreeDegree, byFence, free), chunks: chunks}
}

// Len is the number of entries.
func (l *seqList) Len() int { return l.n }

// push adds e, whose sequence number is above every one in l.
func (l *seqList) push(e entry) {
	last, ok := l.fences.Max()
	switch {
	case ok && len(last.c.entries) < chunkCap:
		last.c.add(e)
	case ok:
		// The last chunk is full: so will this one be, most likely.
		c := l.chunks.get()
		c.add(e)
		l.fences.ReplaceOrInsert(fence{seq: e.seq, c: c})
	default:
		c := &chunk{}
		c.add(e)
		l.fences.ReplaceOrInsert(fence{seq: e.seq, c: c})
	}
	l.n++
}

// add appends es to c, growing it at most to chunkCap.
func (c *chunk) add(es ...entry) {
	if need := len(c.entries) + len(es); need > cap(c.entries) {
		grown := make([]entry, len(c.entries), min(max(need, 2*cap(c.entries)), chunkCap))
		copy(grown, c.entries)
		c.entries = grown
	}
	c.entries = append(c.entries, es...)
}

// chunkOf is the fence of the chunk where seq is or would be.
func (l *seqList) chunkOf(seq uint64) (fence, bool) {
	var f fence
	found := false
	l.fences.DescendLessOrEqual(fence{seq: seq}, func(x fence) bool {
		f, found = x, true
		return false
	})
	return f, found
}

// get returns the entry of seq.
func (l *seqList) get(seq uint64) (entry, bool) {
	f, ok := l.chunkOf(seq)
	if !ok {
		return entry{}, false
	}
	i, ok := f.c.index(seq)
	if !ok {
		return entry{}, false
	}
	return f.c.entries[i], true
}

// delete removes the entry of seq, if there is one, and returns it.
func (l *seqList) delete(seq uint64) (entry, bool) {
	f, ok := l.chunkOf(seq)
	if !ok {
		return entry{}, false
	}
	c := f.c
	i, ok := c.index(seq)
	if !ok {
		return entry{}, false
	}
	e := c.entries[i]
	c.entries = slices.Delete(c.entries, i, i+1) // zeroes the vacated entry
	l.n--
	switch {
	case len(c.entries) == 0:
		l.fences.Delete(f)
		l.chunks.put(c)
	case len(c.entries) < chunkMerge:
		l.merge(f)
	}
	return e, true
}

// merge joins the chunk of f with its next or previous chunk, if the two fit
// in one.
func (l *seqList) merge(f fence) {
	if next, ok := l.next(f.seq); ok && len(f.c.entries)+len(next.c.entries) <= chunkCap {
		f.c.add(next.c.entries...)
		l.fences.Delete(next)
		l.chunks.put(next.c)
		return
	}
	if f.seq == 0 {
		return
	}
	if prev, ok := l.chunkOf(f.seq - 1); ok && len(prev.c.entries)+len(f.c.entries) <= chunkCap {
		prev.c.add(f.c.entries...)
		l.fences.Delete(f)
		l.chunks.put(f.c)
	}
}

// next is the fence after the one at seq.
func (l *seqList) next(seq uint64) (fence, bool) {
	var f fence
	found := false
	l.fences.AscendGreaterOrEqual(fence{seq: seq + 1}, func(x fence) bool {
		f, found = x, true
		return false
	})
	return f, found
}

// ascend calls fn on each entry with a sequence number of at least seq, in
// order, until fn returns false.
func (l *seqList) ascend(seq uint64, fn func(e *entry) bool) {
	start, ok := l.chunkOf(seq)
	if !ok {
		start = fence{}
	}
	first := true
	l.fences.AscendGreaterOrEqual(start, func(f fence) bool {
		i := 0
		if first {
			// Later chunks hold only greater sequence numbers.
			i, _ = f.c.index(seq)
			first = false
		}
		for ; i < len(f.c.entries); i++ {
			if !fn(&f.c.entries[i]) {
				return false
			}
		}
		return true
	})
}

// clear drops every entry.
func (l *seqList) clear() {
	l.fences.Clear(false)
	l.n = 0
}
