package server_test

import (
	"bytes"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	peerpb "github.com/libp2p/go-libp2p/core/peer/pb"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous/pb"
)

// rawPeerRecord is a peer record whose payload is given as is, so a test
// can sign addresses that do not parse.
type rawPeerRecord struct{ payload []byte }

func (*rawPeerRecord) Domain() string                   { return peer.PeerRecordEnvelopeDomain }
func (*rawPeerRecord) Codec() []byte                    { return peer.PeerRecordEnvelopePayloadType }
func (r *rawPeerRecord) MarshalRecord() ([]byte, error) { return r.payload, nil }
func (r *rawPeerRecord) UnmarshalRecord(b []byte) error { r.payload = b; return nil }

// Bytes a sender adds to a validly signed envelope outside what it signed
// are neither stored nor served: the point keeps the envelope re-encoded.
func TestRegisterKeepsOnlyWhatWasSigned(t *testing.T) {
	p := newPoint(t)
	a := newPeer(t, p)
	rec := a.record()
	padded := protowire.AppendTag(bytes.Clone(rec), 99, protowire.BytesType)
	padded = protowire.AppendBytes(padded, bytes.Repeat([]byte{'x'}, 2000))
	if rr := a.register0(padded); rr.GetStatus() != pb.Message_OK {
		t.Fatalf("register with unsigned extra bytes: %v %q, want OK (the signature holds)", rr.GetStatus(), rr.GetStatusText())
	}
	dr := newPeer(t, p).discover("chat", 0, nil)
	if len(dr.GetRegistrations()) != 1 {
		t.Fatalf("%d registrations, want 1", len(dr.GetRegistrations()))
	}
	if got := dr.GetRegistrations()[0].GetSignedPeerRecord(); !bytes.Equal(got, rec) {
		t.Fatalf("served a %d-byte record, want the %d bytes that were signed", len(got), len(rec))
	}
}

// A record whose signed addresses do not all parse is refused, not stored
// with the ones that do.
func TestRegisterRefusesUnparseableAddresses(t *testing.T) {
	p := newPoint(t)
	a := newPeer(t, p)
	payload := &peerpb.PeerRecord{PeerId: []byte(a.host.ID()), Seq: 1}
	payload.Addresses = append(payload.Addresses, &peerpb.PeerRecord_AddressInfo{Multiaddr: ma.StringCast("/ip4/127.0.0.1/tcp/4001").Bytes()})
	for range 300 {
		payload.Addresses = append(payload.Addresses, &peerpb.PeerRecord_AddressInfo{Multiaddr: []byte{0xff, 0xff, 0xff}})
	}
	b, err := proto.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	env, err := record.Seal(&rawPeerRecord{b}, a.host.Peerstore().PrivKey(a.host.ID()))
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if rr := a.register0(data); rr.GetStatus() != pb.Message_E_INVALID_SIGNED_PEER_RECORD {
		t.Fatalf("register: %v %q, want E_INVALID_SIGNED_PEER_RECORD", rr.GetStatus(), rr.GetStatusText())
	}
	if dr := newPeer(t, p).discover("chat", 0, nil); len(dr.GetRegistrations()) != 0 {
		t.Fatalf("%d registrations stored, want none", len(dr.GetRegistrations()))
	}
}

// register0 registers rec in "chat" with the default TTL.
func (c *peerConn) register0(rec []byte) *pb.Message_RegisterResponse {
	c.t.Helper()
	return c.roundTrip(registerMsg("chat", rec, nil)).GetRegisterResponse()
}
