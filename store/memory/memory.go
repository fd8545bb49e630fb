// Package memory is the in-memory store.Store: fast, and empty again after a
// restart.
//
// Every registration sits in three ordered indexes (by sequence number, by
// namespace and sequence number, by expiry) and one map by (namespace, peer),
// so Register and Unregister cost O(log n) and a Discover of k results
// O(log n + k), whatever else the store holds. Each call first removes the
// registrations that have expired, wherever they sit, in O(log n) each.
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
const btreeDegree = 32

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("memory store is closed")

type key struct {
	ns   string
	peer peer.ID
}

// entry is a stored registration. Its Seq and Expires never change while it
// is in an index.
type entry struct {
	store.Registration
}

// seqItem orders an entry by sequence number. The key sits in the item, so
// that searching an index reads only its own nodes.
type seqItem struct {
	seq uint64
	e   *entry
}

func bySeq(a, b seqItem) bool { return a.seq < b.seq }

// expiryItem orders an entry by expiry, then sequence number.
type expiryItem struct {
	expires int64 // Unix nanoseconds
	seq     uint64
	e       *entry
}

func byExpiry(a, b expiryItem) bool {
	if a.expires != b.expires {
		return a.expires < b.expires
	}
	return a.seq < b.seq
}

func (e *entry) seqItem() seqItem { return seqItem{e.Seq, e} }

func (e *entry) expiryItem() expiryItem { return expiryItem{e.Expires.UnixNano(), e.Seq, e} }

// Store is an in-memory store.Store.
type Store struct {
	mu       sync.Mutex
	closed   bool
	seq      uint64
	byKey    map[key]*entry
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
		byKey:    make(map[key]*entry),
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
		s.remove(old)
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
	e := &entry{reg}
	e.Seq = s.seq
	e.Record = append([]byte(nil), reg.Record...)
	s.insert(e)
	return e.Seq, nil
}

// Unregister implements store.Store.
func (s *Store) Unregister(_ context.Context, ns string, p peer.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if e, ok := s.byKey[key{ns, p}]; ok {
		s.remove(e)
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
		out = append(out, it.e.Registration)
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
	for {
		it, ok := s.byExpiry.Min()
		if !ok || it.e.Expires.After(now) {
			return
		}
		s.remove(it.e)
	}
}

func (s *Store) insert(e *entry) {
	s.byKey[key{e.Namespace, e.Peer}] = e
	s.all.ReplaceOrInsert(e.seqItem())
	s.byExpiry.ReplaceOrInsert(e.expiryItem())
	tree := s.byNS[e.Namespace]
	if tree == nil {
		tree = btree.NewWithFreeListG(btreeDegree, bySeq, s.free)
		s.byNS[e.Namespace] = tree
	}
	tree.ReplaceOrInsert(e.seqItem())
	s.perPeer[e.Peer]++
}

func (s *Store) remove(e *entry) {
	delete(s.byKey, key{e.Namespace, e.Peer})
	s.all.Delete(e.seqItem())
	s.byExpiry.Delete(e.expiryItem())
	if tree := s.byNS[e.Namespace]; tree != nil {
		tree.Delete(e.seqItem())
		if tree.Len() == 0 {
			delete(s.byNS, e.Namespace)
		}
	}
	if s.perPeer[e.Peer]--; s.perPeer[e.Peer] <= 0 {
		delete(s.perPeer, e.Peer)
	}
}
