package server

import (
	"crypto/rand"
	"strconv"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/rendezvous-p2p/rendezvous"
)

func newKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, id
}

func sealed(t testing.TB, key crypto.PrivKey, port int) []byte {
	t.Helper()
	rec, err := rendezvous.SealPeerRecord(key, []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/" + strconv.Itoa(port))}, uint64(port))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// The cache answers only for the very bytes a peer registered with before:
// another record of the same peer, or the same bytes from another peer,
// are verified as if nothing were cached.
func TestRecordCacheAnswersOnlyForTheSameBytesFromTheSamePeer(t *testing.T) {
	c, err := newRecordCache(8)
	if err != nil {
		t.Fatal(err)
	}
	key, id := newKey(t)
	_, other := newKey(t)
	good := sealed(t, key, 1)
	if _, err := c.verify(good, id, 8192); err != nil {
		t.Fatalf("first REGISTER: %v", err)
	}
	if _, ok := c.peers.Get(id); !ok {
		t.Fatal("a verified record is not remembered")
	}
	if kept, err := c.verify(good, id, 8192); err != nil || string(kept) != string(good) {
		t.Fatalf("refresh with the same record: %v", err)
	}
	if _, err := c.verify(good, other, 8192); rendezvous.StatusOf(err) != rendezvous.StatusInvalidSignedPeerRecord {
		t.Fatalf("the same record from another peer: %v, want E_INVALID_SIGNED_PEER_RECORD", err)
	}
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 1 // the signature
	if _, err := c.verify(tampered, id, 8192); rendezvous.StatusOf(err) != rendezvous.StatusInvalidSignedPeerRecord {
		t.Fatalf("a changed record of the same peer: %v, want E_INVALID_SIGNED_PEER_RECORD", err)
	}
	if _, err := c.verify(good, id, len(good)-1); rendezvous.StatusOf(err) != rendezvous.StatusInvalidSignedPeerRecord {
		t.Fatalf("a remembered record over the size limit: %v, want E_INVALID_SIGNED_PEER_RECORD", err)
	}
	newer := sealed(t, key, 2)
	if _, err := c.verify(newer, id, 8192); err != nil {
		t.Fatalf("a new record: %v", err)
	}
	if v, _ := c.peers.Get(id); string(v.kept) != string(newer) {
		t.Fatal("the cache still holds the older record")
	}
}

// The cache holds at most its size in peers.
func TestRecordCacheIsBounded(t *testing.T) {
	c, err := newRecordCache(4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		key, id := newKey(t)
		if _, err := c.verify(sealed(t, key, i), id, 8192); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.peers.Len(); n != 4 {
		t.Fatalf("cache holds %d peers, want 4", n)
	}
	if none, _ := newRecordCache(0); none != nil {
		t.Fatal("a size of 0 should cache nothing")
	}
}
