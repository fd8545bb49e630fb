package server_test

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
)

// forgeRecord returns an envelope, signed with key, of a record that claims
// to be about subject.
func forgeRecord(t testing.TB, key crypto.PrivKey, subject peer.ID) []byte {
	t.Helper()
	rec := &peer.PeerRecord{PeerID: subject, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}, Seq: 1}
	env, err := record.Seal(rec, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
