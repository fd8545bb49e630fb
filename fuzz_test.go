package rendezvous_test

import (
	"bytes"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/rendezvous-p2p/rendezvous"
)

// FuzzDecodeCookie checks that any cookie either decodes for its namespace
// and encodes back to itself, or is refused with E_INVALID_COOKIE.
func FuzzDecodeCookie(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 'n', 's'}, "ns")
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1}, "")
	f.Add([]byte{1, 2, 3}, "ns")
	f.Fuzz(func(t *testing.T, b []byte, ns string) {
		c, err := rendezvous.DecodeCookie(b, ns)
		if err != nil {
			if rendezvous.StatusOf(err) != rendezvous.StatusInvalidCookie {
				t.Fatalf("refused with %v", err)
			}
			return
		}
		if len(b) > 0 && !bytes.Equal(c.Encode(), b) {
			t.Fatalf("cookie %x decodes to %+v which encodes to %x", b, c, c.Encode())
		}
	})
}

// FuzzOpenSignedPeerRecord checks that no envelope makes the verifier panic,
// and that an accepted one is signed by its record's peer.
func FuzzOpenSignedPeerRecord(f *testing.F) {
	key, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		f.Fatal(err)
	}
	addrs := []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}
	for _, seal := range []func(crypto.PrivKey, []ma.Multiaddr, uint64) ([]byte, error){rendezvous.SealPeerRecord, rendezvous.SealLegacyPeerRecord} {
		rec, err := seal(key, addrs, 1)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec)
	}
	f.Add([]byte("not an envelope"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, env, err := rendezvous.OpenSignedPeerRecord(b)
		if err != nil {
			if rendezvous.StatusOf(err) != rendezvous.StatusInvalidSignedPeerRecord {
				t.Fatalf("refused with %v", err)
			}
			return
		}
		if !rec.PeerID.MatchesPublicKey(env.PublicKey) {
			t.Fatalf("accepted a record of %s signed by another key", rec.PeerID)
		}
	})
}
