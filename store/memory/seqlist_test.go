package memory

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/btree"
)

// checkSeqList fails t unless l holds exactly want, in order, in chunks that
// keep the list's invariants.
func checkSeqList(t *testing.T, l *seqList, want []uint64) {
	t.Helper()
	var got []uint64
	var prev *fence
	l.fences.Ascend(func(f fence) bool {
		c := f.c
		switch {
		case len(c.entries) == 0:
			t.Fatalf("empty chunk at fence %d", f.seq)
		case cap(c.entries) > chunkCap:
			t.Fatalf("chunk of capacity %d", cap(c.entries))
		case c.entries[0].seq < f.seq:
			t.Fatalf("entry %d below its fence %d", c.entries[0].seq, f.seq)
		case prev != nil && len(got) > 0 && got[len(got)-1] >= f.seq:
			t.Fatalf("entry %d not below the next fence %d", got[len(got)-1], f.seq)
		case prev != nil && len(prev.c.entries) < chunkMerge && len(c.entries) < chunkMerge:
			t.Fatalf("two sparse chunks side by side: %d and %d entries", len(prev.c.entries), len(c.entries))
		}
		for _, e := range c.entries {
			got = append(got, e.seq)
		}
		prev = &f
		return true
	})
	if !slices.Equal(got, want) || l.Len() != len(want) {
		t.Fatalf("list holds %d entries %v, Len %d; want %d %v", len(got), got, l.Len(), len(want), want)
	}
}

// TestSeqList pushes and deletes at random and checks every answer of the
// list against a sorted slice, and its chunks after every step.
func TestSeqList(t *testing.T) {
	for seed := range uint64(10) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			l := newSeqList(btree.NewFreeListG[fence](8), &chunkPool{})
			var want []uint64
			next := uint64(1)
			for step := range 20000 {
				// Phases that grow, shrink and churn the list.
				grow := []int{70, 30, 50}[step/2000%3]
				switch r := rng.IntN(100); {
				case r < grow:
					l.push(entry{seq: next})
					want = append(want, next)
					next += 1 + uint64(rng.IntN(3))
				case len(want) > 0:
					i := rng.IntN(len(want))
					if rng.IntN(4) == 0 {
						i = 0 // the oldest, as refreshes do
					}
					l.delete(want[i])
					want = slices.Delete(want, i, i+1)
				}
				l.delete(next + 100) // absent: no change
				if step%50 == 0 || len(want) < 200 {
					checkSeqList(t, l, want)
				}
				if len(want) > 0 {
					i := rng.IntN(len(want))
					if e, ok := l.get(want[i]); !ok || e.seq != want[i] {
						t.Fatalf("get(%d) = %d, %v", want[i], e.seq, ok)
					}
					if _, ok := l.get(want[i] + 1); ok && !slices.Contains(want, want[i]+1) {
						t.Fatalf("get(%d) found an entry never pushed or deleted", want[i]+1)
					}
					from := want[i] - uint64(rng.IntN(2))
					limit := 1 + rng.IntN(150)
					var got []uint64
					l.ascend(from, func(e *entry) bool {
						got = append(got, e.seq)
						return len(got) < limit
					})
					j, _ := slices.BinarySearch(want, from)
					exp := want[j:min(j+limit, len(want))]
					if !slices.Equal(got, exp) {
						t.Fatalf("ascend(%d) limit %d = %v, want %v", from, limit, got, exp)
					}
				}
			}
			checkSeqList(t, l, want)
		})
	}
}
