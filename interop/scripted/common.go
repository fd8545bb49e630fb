// Package scripted holds rendezvous points and clients that speak the
// protocol with the habits of other implementations, as shared/spec's
// interop notes describe them: what each requires on decode, what it
// omits, how it frames and caps requests, how many requests it reads per
// stream, when it resets, its cookie format, its TTL range and what it
// does with an empty namespace. They are strict on purpose: each refuses
// what the real implementation refuses, so a peer of ours that passes
// against them does not lean on a tolerance the real one lacks.
//
// Each flavour has its own file: a point (mounted on a host) and a client
// (driven call by call). What they share, a registration book, framing and
// record handling, is here.
package scripted

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// Entry is one registration held by a scripted point.
type Entry struct {
	NS      string
	Peer    peer.ID
	Record  []byte
	TTL     time.Duration // as granted
	Expires time.Time
	Seq     uint64 // position in the point's order of registration
}

// Book is the registrations of a scripted point, in the order they were
// made (a refresh moves a registration to the end).
type Book struct {
	mu      sync.Mutex
	next    uint64
	entries []Entry // ordered by Seq
}

// Put registers p in ns, replacing its earlier registration there, and
// returns the entry's sequence number.
func (b *Book) Put(ns string, p peer.ID, record []byte, ttl time.Duration, now time.Time) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removeLocked(func(e Entry) bool { return e.NS == ns && e.Peer == p })
	b.next++
	b.entries = append(b.entries, Entry{NS: ns, Peer: p, Record: slices.Clone(record), TTL: ttl, Expires: now.Add(ttl), Seq: b.next})
	return b.next
}

// Remove drops the registrations for which drop is true.
func (b *Book) Remove(drop func(Entry) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removeLocked(drop)
}

func (b *Book) removeLocked(drop func(Entry) bool) {
	b.entries = slices.DeleteFunc(b.entries, drop)
}

// Live returns the unexpired registrations for which keep is true (every
// one if keep is nil), in order.
func (b *Book) Live(now time.Time, keep func(Entry) bool) []Entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Entry
	for _, e := range b.entries {
		if now.Before(e.Expires) && (keep == nil || keep(e)) {
			out = append(out, e)
		}
	}
	return out
}

// Count counts the live registrations for which keep is true.
func (b *Book) Count(now time.Time, keep func(Entry) bool) int {
	return len(b.Live(now, keep))
}

// errTooLarge is a frame longer than the reader's cap.
var errTooLarge = errors.New("message larger than the read cap")

// ReadFrame reads one varint-length-prefixed message of at most limit
// bytes. A longer one is not read: errTooLarge.
func ReadFrame(r *bufio.Reader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: %d > %d", errTooLarge, n, limit)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// WriteFrame writes m with a varint length prefix, in one write.
func WriteFrame(w io.Writer, m proto.Message) error {
	body, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	_, err = w.Write(append(binary.AppendUvarint(nil, uint64(len(body))), body...))
	return err
}

// Envelope is how a peer record is signed.
type Envelope int

const (
	// Standard is the libp2p-peer-record envelope (RFC 0003).
	Standard Envelope = iota
	// Legacy is rust-libp2p's libp2p-routing-state envelope.
	Legacy
)

// OpenRecord verifies a signed peer record and says which envelope holds
// it.
func OpenRecord(data []byte) (*peer.PeerRecord, Envelope, error) {
	rec, env, err := rendezvous.OpenSignedPeerRecord(data)
	if err != nil {
		return nil, 0, err
	}
	if bytes.Equal(env.PayloadType, []byte(rendezvous.LegacyPeerRecordCodec)) {
		return rec, Legacy, nil
	}
	return rec, Standard, nil
}

// SealRecord signs a peer record of h with its listen addresses (or the
// given ones) in the given envelope.
func SealRecord(h host.Host, kind Envelope, addrs ...ma.Multiaddr) ([]byte, error) {
	key := h.Peerstore().PrivKey(h.ID())
	if key == nil {
		return nil, errors.New("scripted: host has no private key")
	}
	if len(addrs) == 0 {
		addrs = h.Addrs()
	}
	return seal(key, kind, addrs)
}

func seal(key crypto.PrivKey, kind Envelope, addrs []ma.Multiaddr) ([]byte, error) {
	seq := peer.TimestampSeq()
	if kind == Legacy {
		return rendezvous.SealLegacyPeerRecord(key, addrs, seq)
	}
	return rendezvous.SealPeerRecord(key, addrs, seq)
}

// Decode unmarshals a message, as proto2 does: unknown fields are kept,
// absent fields stay absent.
func Decode(b []byte) (*pb.Message, error) {
	var m pb.Message
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
