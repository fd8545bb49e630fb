package client

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// sealedRecord is the last peer record the client signed: refreshes reuse
// it, with its sequence number, until the advertised addresses change.
type sealedRecord struct {
	addrs []byte // the concatenated binary addresses it holds
	seq   uint64
	data  []byte
	// legacy is the same record in the legacy envelope, for points that
	// read no other (rust-libp2p's).
	legacy []byte
}

// checkTTL resolves the TTL to ask for (0 means the client's default) and
// refuses one outside the client's policy.
func (c *Client) checkTTL(ttl time.Duration) (time.Duration, error) {
	if ttl == 0 {
		ttl = c.ttl.Default
	}
	if ttl < 0 || ttl%time.Second != 0 {
		return 0, rendezvous.Errorf(rendezvous.StatusInvalidTTL, "ttl %v is not a positive whole number of seconds", ttl)
	}
	if _, err := c.ttl.Resolve(uint64(ttl / time.Second)); err != nil {
		return 0, err
	}
	return ttl, nil
}

// registerRequest builds the REGISTER of the host in ns, checking what it
// can before any I/O. It returns the request and the sequence number of the
// record in it. Addresses are dropped from the end of the list until the
// request fits in maxRegisterSize bytes, framing included.
func (c *Client) registerRequest(ns string, ttl time.Duration) (*pb.Message, uint64, error) {
	if err := rendezvous.ValidateNamespace(ns); err != nil {
		return nil, 0, err
	}
	ttl, err := c.checkTTL(ttl)
	if err != nil {
		return nil, 0, err
	}
	addrs := advertisable(c.addrs())
	if c.addrFilter != nil {
		addrs = c.addrFilter(addrs)
	}
	addrs = withinAddrBudget(addrs, DefaultMaxAdvertisedAddrBytes)
	for range len(addrs) {
		rec, err := c.seal(addrs)
		if err != nil {
			return nil, 0, err
		}
		data, seq := rec.data, rec.seq
		req := &pb.Message{
			Type: pb.Message_REGISTER.Enum(),
			Register: &pb.Message_Register{
				Ns:               proto.String(ns),
				SignedPeerRecord: data,
				Ttl:              proto.Uint64(uint64(ttl / time.Second)),
			},
		}
		size := proto.Size(req)
		if size+protowire.SizeVarint(uint64(size)) <= c.maxRegisterSize || len(addrs) == 1 {
			c.keepRecord(rec)
			return req, seq, nil
		}
		addrs = addrs[:len(addrs)-1]
	}
	return nil, 0, errors.New("rendezvous client: no address to advertise")
}

// seal returns the signed peer record of the host with addrs: the last one
// kept if it holds the same addresses, a new one with a higher sequence
// number otherwise. keepRecord makes it the one refreshes reuse.
func (c *Client) seal(addrs []ma.Multiaddr) (*sealedRecord, error) {
	var key bytes.Buffer
	for _, a := range addrs {
		b := a.Bytes()
		key.Write(protowire.AppendVarint(nil, uint64(len(b))))
		key.Write(b)
	}
	c.recMu.Lock()
	last := c.rec
	c.recMu.Unlock()
	if last != nil && bytes.Equal(last.addrs, key.Bytes()) {
		return last, nil
	}
	priv := c.host.Peerstore().PrivKey(c.host.ID())
	if priv == nil {
		return nil, errors.New("rendezvous client: host has no private key")
	}
	seq := peer.TimestampSeq()
	if last != nil && seq <= last.seq {
		seq = last.seq + 1
	}
	data, err := rendezvous.SealPeerRecord(priv, addrs, seq)
	if err != nil {
		return nil, fmt.Errorf("rendezvous client: signing peer record: %w", err)
	}
	legacy, err := rendezvous.SealLegacyPeerRecord(priv, addrs, seq)
	if err != nil {
		return nil, fmt.Errorf("rendezvous client: signing peer record: %w", err)
	}
	return &sealedRecord{addrs: key.Bytes(), seq: seq, data: data, legacy: legacy}, nil
}

// keepRecord makes rec the record that refreshes reuse, unless a newer one
// is kept already.
func (c *Client) keepRecord(rec *sealedRecord) {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	if c.rec == nil || rec.seq > c.rec.seq {
		c.rec = rec
	}
}

// legacyTwin returns req with its record in the legacy envelope, or nil if
// that record is no longer the one kept.
func (c *Client) legacyTwin(req *pb.Message) *pb.Message {
	r := req.GetRegister()
	c.recMu.Lock()
	rec := c.rec
	c.recMu.Unlock()
	if r == nil || rec == nil || rec.legacy == nil || !bytes.Equal(rec.data, r.GetSignedPeerRecord()) {
		return nil
	}
	twin := proto.Clone(req).(*pb.Message)
	twin.Register.SignedPeerRecord = rec.legacy
	return twin
}

// withinAddrBudget returns the longest head of addrs whose binary forms
// add up to at most budget bytes, and at least the first address.
func withinAddrBudget(addrs []ma.Multiaddr, budget int) []ma.Multiaddr {
	total := 0
	for i, a := range addrs {
		total += len(a.Bytes())
		if total > budget && i > 0 {
			return addrs[:i]
		}
	}
	return addrs
}

// advertisable returns addrs without /p2p/ suffixes and duplicates.
func advertisable(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := make([]ma.Multiaddr, 0, len(addrs))
	seen := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		a, _ = peer.SplitAddr(a)
		if a == nil || seen[string(a.Bytes())] {
			continue
		}
		seen[string(a.Bytes())] = true
		out = append(out, a)
	}
	return out
}
