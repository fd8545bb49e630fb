package server

import (
	"bytes"
	crand "crypto/rand"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-msgio"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// marshalDelimited is a message as proto.Marshal writes it, with its
// length as a varint in front.
func marshalDelimited(t *testing.T, m *pb.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return append(protowire.AppendVarint(nil, uint64(len(b))), b...)
}

// randomText is nil, empty or up to max random bytes (not always UTF-8:
// proto2 strings are not checked).
func randomText(r *rand.Rand, max int) *string {
	switch r.IntN(4) {
	case 0:
		return nil
	case 1:
		return new(string)
	}
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	s := string(b)
	return &s
}

// randomBytes is nil, empty but present, or up to max random bytes.
func randomBytes(r *rand.Rand, max int) []byte {
	switch r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []byte{}
	}
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// randomUint64 is nil or a value from every varint length, 0 and the
// largest included.
func randomUint64(r *rand.Rand) *uint64 {
	var v uint64
	switch r.IntN(5) {
	case 0:
		return nil
	case 1:
		v = 0
	case 2:
		v = math.MaxUint64
	default:
		v = r.Uint64() >> r.IntN(64)
	}
	return &v
}

// statuses are every status of the protocol, and values it does not name
// (negative ones are sign-extended to ten bytes on the wire).
var statuses = []rendezvous.Status{
	rendezvous.StatusOK, rendezvous.StatusInvalidNamespace, rendezvous.StatusInvalidSignedPeerRecord,
	rendezvous.StatusInvalidTTL, rendezvous.StatusInvalidCookie, rendezvous.StatusNotAuthorized,
	rendezvous.StatusInternalError, rendezvous.StatusUnavailable, 1, 127, 128, math.MaxInt32, -1, math.MinInt32,
}

func randomStatus(r *rand.Rand) *rendezvous.Status {
	if r.IntN(5) == 0 {
		return nil
	}
	s := statuses[r.IntN(len(statuses))]
	return &s
}

func randomType(r *rand.Rand) *pb.Message_MessageType {
	if r.IntN(6) == 0 {
		return nil
	}
	t := pb.Message_MessageType(r.IntN(6) - 1) // -1 and 5 are no type the protocol names
	return &t
}

func randomRegister(r *rand.Rand, maxRecord int) *pb.Message_Register {
	return &pb.Message_Register{Ns: randomText(r, rendezvous.MaxNamespaceLength), SignedPeerRecord: randomBytes(r, maxRecord), Ttl: randomUint64(r)}
}

// randomMessage is a message of random fields, mostly responses.
func randomMessage(r *rand.Rand) *pb.Message {
	m := &pb.Message{Type: randomType(r)}
	switch r.IntN(4) {
	case 0:
		m.RegisterResponse = &pb.Message_RegisterResponse{Status: randomStatus(r), StatusText: randomText(r, 300), Ttl: randomUint64(r)}
	case 1:
		d := &pb.Message_DiscoverResponse{Cookie: randomBytes(r, 200), Status: randomStatus(r), StatusText: randomText(r, 300)}
		n := r.IntN(4)
		switch n {
		case 0:
		case 1:
			d.Registrations = []*pb.Message_Register{}
		case 2:
			n = 1 + r.IntN(5)
		default:
			n = 1 + r.IntN(DefaultMaxDiscoverLimit)
		}
		for range n {
			d.Registrations = append(d.Registrations, randomRegister(r, 400))
		}
		m.DiscoverResponse = d
	default:
		// Every field at once, requests too.
		if r.IntN(2) == 0 {
			m.Register = randomRegister(r, rendezvous.DefaultMaxRecordSize)
		}
		if r.IntN(2) == 0 {
			m.RegisterResponse = &pb.Message_RegisterResponse{Status: randomStatus(r), StatusText: randomText(r, 30), Ttl: randomUint64(r)}
		}
		if r.IntN(2) == 0 {
			m.Unregister = &pb.Message_Unregister{Ns: randomText(r, 30)}
		}
		if r.IntN(2) == 0 {
			m.Discover = &pb.Message_Discover{Ns: randomText(r, 30), Limit: randomUint64(r), Cookie: randomBytes(r, 30)}
		}
		if r.IntN(2) == 0 {
			m.DiscoverResponse = &pb.Message_DiscoverResponse{Registrations: []*pb.Message_Register{randomRegister(r, 30)}, Cookie: randomBytes(r, 30), Status: randomStatus(r), StatusText: randomText(r, 30)}
		}
	}
	return m
}

// TestAppendDelimitedIsProtoMarshal checks that responses are written as
// proto.Marshal writes them, byte for byte, after their length.
func TestAppendDelimitedIsProtoMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		m := randomMessage(r)
		want := marshalDelimited(t, m)
		prefix := []byte("kept")
		got := appendDelimited(prefix, m)
		if !bytes.Equal(got[:len(prefix)], []byte("kept")) || !bytes.Equal(got[len(prefix):], want) {
			t.Fatalf("message %d %v:\n got %x\nwant %x", i, m, got[len(prefix):], want)
		}
	}
}

// TestAppendDelimitedEdges checks the answers the point builds and the
// limits of each field against proto.Marshal.
func TestAppendDelimitedEdges(t *testing.T) {
	big := strings.Repeat("n", rendezvous.MaxNamespaceLength)
	record := bytes.Repeat([]byte{0xff}, rendezvous.DefaultMaxRecordSize)
	page := make([]*pb.Message_Register, DefaultMaxDiscoverLimit)
	for i := range page {
		ttl := uint64(rendezvous.DefaultMaxTTL.Seconds())
		page[i] = &pb.Message_Register{Ns: &big, SignedPeerRecord: record, Ttl: &ttl}
	}
	cases := map[string]*pb.Message{
		"empty":              {},
		"type only":          {Type: pb.Message_DISCOVER_RESPONSE.Enum()},
		"empty submessages":  {RegisterResponse: &pb.Message_RegisterResponse{}, DiscoverResponse: &pb.Message_DiscoverResponse{}},
		"empty registration": {DiscoverResponse: &pb.Message_DiscoverResponse{Registrations: []*pb.Message_Register{{}, {}}}},
		"refusal":            discoverRefusal(rendezvous.Errorf(rendezvous.StatusInvalidCookie, "bad cookie")),
		"largest page":       newDiscoverAnswer(rendezvous.StatusOK, "", page, bytes.Repeat([]byte{1}, 64)),
		"empty page":         newDiscoverAnswer(rendezvous.StatusOK, "", nil, nil),
	}
	for _, st := range statuses {
		cases["register "+st.String()] = newRegisterAnswer(st, "text of "+st.String(), rendezvous.DefaultMaxTTL)
		cases["discover "+st.String()] = newDiscoverAnswer(st, "", page[:1], []byte{})
	}
	for name, m := range cases {
		if got, want := appendDelimited(nil, m), marshalDelimited(t, m); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %x\nwant %x", name, got, want)
		}
	}
}

// BenchmarkDiscoverResponseWrite is the writing of a DISCOVER response of
// 100 registrations to a stream: as proto.Marshal and a varint writer do it
// and as the point does.
//
//	go test -run '^$' -bench DiscoverResponseWrite -benchmem ./server
func BenchmarkDiscoverResponseWrite(b *testing.B) {
	regs := make([]*pb.Message_Register, 100)
	for i := range regs {
		key, _, err := crypto.GenerateEd25519Key(crand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		rec, err := rendezvous.SealPeerRecord(key, []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/192.0.2.%d/tcp/4001", i))}, 1)
		if err != nil {
			b.Fatal(err)
		}
		ns, ttl := "bench-1", uint64(7200)
		regs[i] = &pb.Message_Register{Ns: &ns, SignedPeerRecord: rec, Ttl: &ttl}
	}
	resp := newDiscoverAnswer(rendezvous.StatusOK, "", regs, bytes.Repeat([]byte{1}, 40))
	b.Run("proto.Marshal", func(b *testing.B) {
		wr := msgio.NewVarintWriter(io.Discard)
		for b.Loop() {
			m, err := proto.Marshal(resp)
			if err != nil {
				b.Fatal(err)
			}
			if err := wr.WriteMsg(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wire", func(b *testing.B) {
		var s Server
		for b.Loop() {
			if err := s.writeResponse(io.Discard, resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}
