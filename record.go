package rendezvous

import (
	"bytes"
	"errors"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	peerpb "github.com/libp2p/go-libp2p/core/peer/pb"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"
)

// The envelope of the legacy peer record that rust-libp2p signs: the same
// PeerRecord payload as the standard one, under another domain and payload
// type.
const (
	LegacyPeerRecordDomain = "libp2p-routing-state"
	LegacyPeerRecordCodec  = "/libp2p/routing-state-record"
)

// DefaultMaxRecordSize is the default bound on the size of a signed peer
// record in a REGISTER.
const DefaultMaxRecordSize = 8 << 10

// legacyPeerRecord is a peer.PeerRecord in the legacy envelope.
type legacyPeerRecord struct{ peer.PeerRecord }

func (*legacyPeerRecord) Domain() string { return LegacyPeerRecordDomain }
func (*legacyPeerRecord) Codec() []byte  { return []byte(LegacyPeerRecordCodec) }

// OpenSignedPeerRecord verifies a signed envelope holding a peer record, in
// the standard (libp2p-peer-record) or the legacy (libp2p-routing-state)
// envelope, and checks that its signer is the peer the record is about. It
// returns the record and the envelope, or an *Error with
// StatusInvalidSignedPeerRecord.
func OpenSignedPeerRecord(data []byte) (*peer.PeerRecord, *record.Envelope, error) {
	if len(data) == 0 {
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "no signed peer record")
	}
	unverified, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "malformed envelope")
	}
	var (
		rec *peer.PeerRecord
		env *record.Envelope
	)
	switch {
	case bytes.Equal(unverified.PayloadType, peer.PeerRecordEnvelopePayloadType):
		rec = &peer.PeerRecord{}
		env, err = record.ConsumeTypedEnvelope(data, rec)
	case bytes.Equal(unverified.PayloadType, []byte(LegacyPeerRecordCodec)):
		legacy := &legacyPeerRecord{}
		env, err = record.ConsumeTypedEnvelope(data, legacy)
		rec = &legacy.PeerRecord
	default:
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "envelope does not hold a peer record")
	}
	if err != nil {
		if errors.Is(err, record.ErrInvalidSignature) {
			return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "invalid signature")
		}
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "invalid peer record")
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "invalid signing key")
	}
	if signer != rec.PeerID {
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "record for %s is signed by %s", rec.PeerID, signer)
	}
	return rec, env, nil
}

// VerifyRegistrationRecord checks the signed peer record of a REGISTER from
// peer remote: at most maxSize bytes, a valid signature by remote, a record
// about remote, at least one address, and every address one that parses.
// It returns the record and the envelope re-encoded with nothing but its
// signed content and the signature: bytes a sender added to the envelope
// outside what it signed are not kept.
func VerifyRegistrationRecord(data []byte, remote peer.ID, maxSize int) (*peer.PeerRecord, []byte, error) {
	if len(data) > maxSize {
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "signed peer record is %d bytes, more than %d", len(data), maxSize)
	}
	rec, env, err := OpenSignedPeerRecord(data)
	if err != nil {
		return nil, nil, err
	}
	if rec.PeerID != remote {
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "record is for %s, not for the registering peer", rec.PeerID)
	}
	if len(rec.Addrs) == 0 {
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "record has no addresses")
	}
	// go-libp2p skips the addresses it cannot parse; refuse them instead
	// of storing and serving what no peer can dial.
	var payload peerpb.PeerRecord
	if err := proto.Unmarshal(env.RawPayload, &payload); err != nil {
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "invalid peer record")
	}
	if bad := len(payload.GetAddresses()) - len(rec.Addrs); bad > 0 {
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "record holds %d addresses that do not parse", bad)
	}
	canonical, err := env.Marshal()
	if err != nil {
		return nil, nil, Errorf(StatusInvalidSignedPeerRecord, "invalid envelope")
	}
	return rec, canonical, nil
}

// SealPeerRecord signs a standard peer record of the key's peer with the
// given addresses and sequence number, and returns the envelope bytes.
func SealPeerRecord(key crypto.PrivKey, addrs []ma.Multiaddr, seq uint64) ([]byte, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	rec := &peer.PeerRecord{PeerID: id, Addrs: addrs, Seq: seq}
	env, err := record.Seal(rec, key)
	if err != nil {
		return nil, err
	}
	return env.Marshal()
}

// SealLegacyPeerRecord is SealPeerRecord in the legacy envelope that
// rust-libp2p signs.
func SealLegacyPeerRecord(key crypto.PrivKey, addrs []ma.Multiaddr, seq uint64) ([]byte, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	rec := &legacyPeerRecord{peer.PeerRecord{PeerID: id, Addrs: addrs, Seq: seq}}
	env, err := record.Seal(rec, key)
	if err != nil {
		return nil, err
	}
	return env.Marshal()
}
