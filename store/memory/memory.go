// Package memory is the in-memory store.Store: fast, and empty again after a
// restart.
//
// Each namespace keeps its registrations in sequence order; one more such
// list holds every namespace's, a B-tree orders all by expiry, and a map
// finds the registration of a (namespace, peer). Register and Unregister
// cost O(log n) and a Discover of k results O(log n + k), whatever else the
// store holds. The sequence lists hold the registrations themselves, in
// 40-byte entries, in chunks of up to 64 contiguous entries
// found through a B-tree of their first sequence numbers: registrations only
// ever join a list at its end, so chunks fill up, and a page of 100 is read
// from two or three of them. Each call first removes the registrations that
// have expired, wherever they sit, in O(log n) each. The map also keeps the
// source of each registration, and another counts the registrations of each
// source prefix, so the per-source quotas cost O(1).
//
// A peer registers the same signed record in each of its namespaces: the
// store keeps one copy of each peer ID, and one of the record a peer
// registered last, which its later registrations of an identical record
// share. A registration of a different record gets a copy of its own, and
// becomes the one the next share; every registration holds exactly one
// record, so the records held never outnumber the registrations, and a
// record is freed with the last registration holding it.
package memory

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/btree"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/store"
)

// btreeDegree is the degree of the B-trees: the fences of each sequence
// list, and the expiry index.
const btreeDegree = 64

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("memory store is closed")

// namespace is a namespace holding live registrations. The store keeps one
// per name while the namespace is not empty, so that entries and keys can
// refer to it by pointer.
type namespace struct {
	name string
	regs *seqList
}

// peerInfo is a peer holding live registrations. The store keeps one per
// peer ID while the peer has registrations, so that entries and keys can
// refer to it by pointer.
type peerInfo struct {
	id peer.ID
	n  int // its registrations
	// last is the record of its latest registration, which a registration
	// of an identical record shares.
	last *record
	// src is the source of its latest registration that had one, which a
	// registration from the same source shares.
	src *netip.Addr
}

// record is a signed peer record held by one registration or more.
type record struct {
	b []byte
}

// entry is a registration in a sequence list: 40 bytes.
type entry struct {
	seq     uint64
	expires int64 // Unix nanoseconds
	ns      *namespace
	peer    *peerInfo
	rec     *record
}

// registration is e as the Store interface gives it.
func (e *entry) registration() store.Registration {
	return store.Registration{
		Namespace: e.ns.name,
		Peer:      e.peer.id,
		Record:    e.rec.b,
		Expires:   time.Unix(0, e.expires).UTC(),
		Seq:       e.seq,
	}
}

// key names a registration: one per (namespace, peer).
type key struct {
	ns   *namespace
	peer *peerInfo
}

// slot finds the registration of a key: its sequence number finds it in the
// sequence lists, and with its expiry it is its place in the expiry index.
type slot struct {
	expires int64 // Unix nanoseconds
	seq     uint64
}

// held is what the store knows of a key: the sequence number of its
// registration, and the source it came from (nil if none; kept here rather
// than in the entry, which Discover reads and which stays small). The
// registration's entry holds its expiry.
type held struct {
	seq uint64
	src *netip.Addr
}

func byExpiry(a, b slot) bool {
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
	byKey    map[key]held
	all      *seqList
	byNS     map[string]*namespace
	byExpiry *btree.BTreeG[slot]
	peers    map[peer.ID]*peerInfo
	// perSource counts the registrations of each source prefix (see
	// store.SourcePrefixes).
	perSource map[netip.Prefix]int
	free      *btree.FreeListG[fence]
	chunks    *chunkPool
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
//
// Its sequence starts at the wall clock in nanoseconds, so that a cookie
// handed out before a restart continues after it: everything registered since
// the restart lies after it in the sequence.
func New() *Store {
	free := btree.NewFreeListG[fence](btree.DefaultFreeListSize)
	chunks := &chunkPool{}
	return &Store{
		seq:       uint64(time.Now().UnixNano()),
		byKey:     make(map[key]held),
		all:       newSeqList(free, chunks),
		byNS:      make(map[string]*namespace),
		byExpiry:  btree.NewG(btreeDegree, byExpiry),
		peers:     make(map[peer.ID]*peerInfo),
		perSource: make(map[netip.Prefix]int),
		free:      free,
		chunks:    chunks,
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
	ns := s.byNS[reg.Namespace]
	p := s.peers[reg.Peer]
	if old, ok := s.byKey[key{ns, p}]; ok && p != nil {
		s.remove(key{ns, p}, old)
		ns = s.byNS[reg.Namespace] // gone if that was its last registration
		p = s.peers[reg.Peer]      // and the peer, if it was the peer's last
	} else {
		if limits.MaxRegistrationsPerPeer > 0 && p != nil && p.n >= limits.MaxRegistrationsPerPeer {
			return 0, store.ErrPeerLimit
		}
		inAddr, inNet := s.sourceCounts(reg.Source)
		if err := limits.CheckQuota(reg.Source, inAddr, inNet); err != nil {
			return 0, err
		}
		if limits.MaxRegistrations > 0 && len(s.byKey) >= limits.MaxRegistrations {
			return 0, store.ErrFull
		}
		if ns == nil && limits.MaxNamespaces > 0 && len(s.byNS) >= limits.MaxNamespaces {
			return 0, store.ErrFull
		}
		st := store.Stats{Registrations: len(s.byKey), Namespaces: len(s.byNS)}
		if limits.MayCrowd(reg.Source, inNet) && limits.Crowded(st, ns == nil) {
			return 0, store.ErrCrowded
		}
	}
	if ns == nil {
		ns = &namespace{name: reg.Namespace, regs: newSeqList(s.free, s.chunks)}
		s.byNS[reg.Namespace] = ns
	}
	if p == nil {
		p = &peerInfo{id: reg.Peer}
		s.peers[reg.Peer] = p
	}
	if p.last == nil || !bytes.Equal(p.last.b, reg.Record) {
		p.last = &record{b: append([]byte(nil), reg.Record...)}
	}
	var src *netip.Addr
	if reg.Source.IsValid() {
		if p.src == nil || *p.src != reg.Source {
			addr := reg.Source
			p.src = &addr
		}
		src = p.src
	}
	s.seq++
	e := entry{
		seq:     s.seq,
		expires: reg.Expires.UnixNano(),
		ns:      ns,
		peer:    p,
		rec:     p.last,
	}
	s.insert(e, src)
	return e.seq, nil
}

// sourceCounts returns the registrations of src's address and network.
func (s *Store) sourceCounts(src netip.Addr) (inAddr, inNet int) {
	addr, network, ok := store.SourcePrefixes(src)
	if !ok {
		return 0, 0
	}
	return s.perSource[addr], s.perSource[network]
}

// countSource adds d to the counts of src's prefixes.
func (s *Store) countSource(src netip.Addr, d int) {
	addr, network, ok := store.SourcePrefixes(src)
	if !ok {
		return
	}
	for _, p := range []netip.Prefix{addr, network} {
		if s.perSource[p] += d; s.perSource[p] <= 0 {
			delete(s.perSource, p)
		}
	}
}

// Unregister implements store.Store.
func (s *Store) Unregister(_ context.Context, ns string, p peer.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if n, pi := s.byNS[ns], s.peers[p]; n != nil && pi != nil {
		if h, ok := s.byKey[key{n, pi}]; ok {
			s.remove(key{n, pi}, h)
		}
	}
	return nil
}

// Discover implements store.Store.
func (s *Store) Discover(_ context.Context, dst []store.Registration, ns string, after uint64, limit int, now time.Time) ([]store.Registration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return dst, ErrClosed
	}
	s.expire(now)
	list := s.all
	if ns != "" {
		n := s.byNS[ns]
		if n == nil {
			return dst, nil
		}
		list = n.regs
	}
	if limit <= 0 || after == math.MaxUint64 {
		return dst, nil
	}
	dst = slices.Grow(dst, min(limit, list.Len()))
	end := len(dst) + limit
	list.ascend(after+1, func(e *entry) bool {
		dst = append(dst, e.registration())
		return len(dst) < end
	})
	return dst, nil
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
	s.byKey, s.byNS, s.peers, s.perSource = nil, nil, nil, nil
	s.all.clear()
	s.byExpiry.Clear(false)
	return nil
}

// expire removes every registration whose Expires is not after now.
func (s *Store) expire(now time.Time) {
	limit := now.UnixNano()
	for {
		sl, ok := s.byExpiry.Min()
		if !ok || sl.expires > limit {
			return
		}
		e, _ := s.all.get(sl.seq)
		k := key{e.ns, e.peer}
		s.remove(k, s.byKey[k])
	}
}

func (s *Store) insert(e entry, src *netip.Addr) {
	s.byKey[key{e.ns, e.peer}] = held{seq: e.seq, src: src}
	s.all.push(e)
	s.byExpiry.ReplaceOrInsert(slot{expires: e.expires, seq: e.seq})
	e.ns.regs.push(e)
	e.peer.n++
	if src != nil {
		s.countSource(*src, 1)
	}
}

func (s *Store) remove(k key, h held) {
	if h.src != nil {
		s.countSource(*h.src, -1)
	}
	delete(s.byKey, k)
	e, _ := s.all.delete(h.seq)
	s.byExpiry.Delete(slot{expires: e.expires, seq: h.seq})
	if k.ns.regs.delete(h.seq); k.ns.regs.Len() == 0 {
		delete(s.byNS, k.ns.name)
	}
	if k.peer.n--; k.peer.n <= 0 {
		delete(s.peers, k.peer.id)
	}
}
