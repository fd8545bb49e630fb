// Package memory is the in-memory store.Store: fast, and empty again after a
// restart.
//
// Registrations sit in three ordered indexes (every namespace by sequence
// number, each namespace by sequence number, all by expiry) and one map by
// (namespace, peer), so Register and Unregister cost O(log n) and a Discover
// of k results O(log n + k), whatever else the store holds. The sequence
// indexes hold the registrations themselves, not pointers to them, so a
// Discover reads a page from a few contiguous nodes. Each call first removes
// the registrations that have expired, wherever they sit, in O(log n) each.
package memory

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/google/btree"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/store"
)

// btreeDegree is the degree of the ordered indexes.
const btreeDegree = 64

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("memory store is closed")

type key struct {
	ns   string
	peer peer.ID
}

// slot is where the registration of a key sits in the indexes.
type slot struct {
	seq     uint64
	expires int64 // Unix nanoseconds
}

// seqItem is a registration in a sequence index.
type seqItem struct {
	seq uint64
	reg store.Registration
}

func bySeq(a, b seqItem) bool { return a.seq < b.seq }

// expiryItem is a registration's place in the expiry index.
type expiryItem struct {
	slot
	key
}

func byExpiry(a, b expiryItem) bool {
	if a.expires != b.expires {
		return a.expires < b.expires
	}
	return a.seq < b.seq
}

// Store is an in-memory store.Store.
type Store struct {
	mu       sync.Mutex
	closed   bool
	seq      uint64
	byKey    map[key]slot
	all      *btree.BTreeG[seqItem]
	byNS     map[string]*btree.BTreeG[seqItem]
	byExpiry *btree.BTreeG[expiryItem]
	perPeer  map[peer.ID]int
	free     *btree.FreeListG[seqItem]
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
//
// Its sequence starts at the wall clock in nanoseconds, so that a cookie
// handed out before a restart continues after it: everything registered since
// the restart lies after it in the sequence.
func New() *Store {
	free := btree.NewFreeListG[seqItem](btree.DefaultFreeListSize)
	return &Store{
		seq:      uint64(time.Now().UnixNano()),
		byKey:    make(map[key]slot),
		all:      btree.NewWithFreeListG(btreeDegree, bySeq, free),
		byNS:     make(map[string]*btree.BTreeG[seqItem]),
		byExpiry: btree.NewG(btreeDegree, byExpiry),
		perPeer:  make(map[peer.ID]int),
		free:     free,
	}
}

// Register implements store.Store.
func (s *Store) Register(_ context.Context, reg store.Registration, limits store.Limits, now time.Time) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	s.expire(now)
	k := key{reg.Namespace, reg.Peer}
	if old, ok := s.byKey[k]; ok {
		s.remove(k, old)
	} else {
		if limits.MaxRegistrationsPerPeer > 0 && s.perPeer[reg.Peer] >= limits.MaxRegistrationsPerPeer {
			return 0, store.ErrPeerLimit
		}
		if limits.MaxRegistrations > 0 && len(s.byKey) >= limits.MaxRegistrations {
			return 0, store.ErrFull
		}
		if _, ok := s.byNS[reg.Namespace]; !ok && limits.MaxNamespaces > 0 && len(s.byNS) >= limits.MaxNamespaces {
			return 0, store.ErrFull
		}
	}
	s.seq++
	reg.Seq = s.seq
	reg.Record = append([]byte(nil), reg.Record...)
	s.insert(k, reg)
	return reg.Seq, nil
}

// Unregister implements store.Store.
func (s *Store) Unregister(_ context.Context, ns string, p peer.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	k := key{ns, p}
	if sl, ok := s.byKey[k]; ok {
		s.remove(k, sl)
	}
	return nil
}

// Discover implements store.Store.
func (s *Store) Discover(_ context.Context, ns string, after uint64, limit int, now time.Time) ([]store.Registration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.expire(now)
	tree := s.all
	if ns != "" {
		tree = s.byNS[ns]
		if tree == nil {
			return nil, nil
		}
	}
	if limit <= 0 || after == math.MaxUint64 {
		return nil, nil
	}
	out := make([]store.Registration, 0, min(limit, tree.Len()))
	tree.AscendGreaterOrEqual(seqItem{seq: after + 1}, func(it seqItem) bool {
		out = append(out, it.reg)
		return len(out) < limit
	})
	return out, nil
}

// Stats implements store.Store.
func (s *Store) Stats(_ context.Context, now time.Time) (store.Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Stats{}, ErrClosed
	}
	s.expire(now)
	return store.Stats{Registrations: len(s.byKey), Namespaces: len(s.byNS)}, nil
}

// Close implements store.Store; it drops every registration.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.byKey, s.byNS, s.perPeer = nil, nil, nil
	s.all.Clear(false)
	s.byExpiry.Clear(false)
	return nil
}

// expire removes every registration whose Expires is not after now.
func (s *Store) expire(now time.Time) {
	limit := now.UnixNano()
	for {
		it, ok := s.byExpiry.Min()
		if !ok || it.expires > limit {
			return
		}
		s.remove(it.key, it.slot)
	}
}

func (s *Store) insert(k key, reg store.Registration) {
	sl := slot{seq: reg.Seq, expires: reg.Expires.UnixNano()}
	s.byKey[k] = sl
	item := seqItem{reg.Seq, reg}
	s.all.ReplaceOrInsert(item)
	s.byExpiry.ReplaceOrInsert(expiryItem{sl, k})
	tree := s.byNS[k.ns]
	if tree == nil {
		tree = btree.NewWithFreeListG(btreeDegree, bySeq, s.free)
		s.byNS[k.ns] = tree
	}
	tree.ReplaceOrInsert(item)
	s.perPeer[k.peer]++
}

func (s *Store) remove(k key, sl slot) {
	delete(s.byKey, k)
	s.all.Delete(seqItem{seq: sl.seq})
	s.byExpiry.Delete(expiryItem{slot: sl})
	if tree := s.byNS[k.ns]; tree != nil {
		tree.Delete(seqItem{seq: sl.seq})
		if tree.Len() == 0 {
			delete(s.byNS, k.ns)
		}
	}
	if s.perPeer[k.peer]--; s.perPeer[k.peer] <= 0 {
		delete(s.perPeer, k.peer)
	}
}
