package server

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
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

// pointWithPage is a point of the memory store holding n registrations in
// namespace "bench" of ns, each of a record of recordSize random bytes
// (the store does not check records), with TTLs of 1 s to 72 h, on a
// clock that stands still; rc are its resources.
func pointWithPage(t testing.TB, r *rand.Rand, rc Resources, n, recordSize int) (*Server, peer.ID) {
	st := memory.New()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		key, _, err := crypto.GenerateEd25519Key(crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(key)
		rec := make([]byte, 1+r.IntN(recordSize))
		for j := range rec {
			rec[j] = byte(r.Uint32())
		}
		ttl := time.Duration(1+r.Int64N(int64(rendezvous.DefaultMaxTTL/time.Millisecond))) * time.Millisecond
		if i%7 == 0 {
			ttl = time.Duration(r.IntN(2000)) * time.Millisecond // under a second left, or 1 to 2
		}
		reg := store.Registration{Namespace: "bench", Peer: id, Record: rec, Expires: now.Add(ttl + time.Millisecond)}
		if _, err := st.Register(context.Background(), reg, store.Limits{}, now); err != nil {
			t.Fatal(err)
		}
	}
	client, _ := peer.Decode("12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf")
	s, err := New(testhost.New(t), st, WithResources(rc), WithClock(func() time.Time { return now }),
		WithAllowlist(Allowlist{Peers: []peer.ID{client}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, client
}

func discoverRequest(ns string, limit uint64, cookie []byte) *pb.Message {
	return &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{Ns: &ns, Limit: &limit, Cookie: cookie}}
}

// TestDiscoverPageIsItsMessage checks that a DISCOVER answered on a stream,
// written from the store's page, is byte for byte the message
// HandleRequest answers with, as proto.Marshal writes it: every page of a
// namespace (pages cut by the limit and by the response size budget),
// and refusals.
func TestDiscoverPageIsItsMessage(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	rc := DefaultResources()
	rc.MaxRecordSize = 2000
	rc.MaxDiscoverResponseSize = 8 << 10 // pages are cut by size too
	s, client := pointWithPage(t, r, rc, 300, rc.MaxRecordSize)
	check := func(req *pb.Message) *pb.Message {
		t.Helper()
		want, wantStatus := s.HandleRequest(context.Background(), Request{Message: req, Peer: client})
		out := []byte("kept")
		resp, status := s.answer(context.Background(), Request{Message: req, Peer: client}, &out)
		if resp != nil {
			out = appendDelimited(out, resp)
		}
		if status != wantStatus || !bytes.Equal(out[:4], []byte("kept")) || !bytes.Equal(out[4:], marshalDelimited(t, want)) {
			t.Fatalf("%v: answered %v %x, want %v %x", req, status, out[4:], wantStatus, marshalDelimited(t, want))
		}
		return want
	}
	for _, limit := range []uint64{0, 1, 7, 100, 1000} {
		var cookie []byte
		seen := 0
		for range 400 {
			resp := check(discoverRequest("bench", limit, cookie))
			got := len(resp.GetDiscoverResponse().GetRegistrations())
			if got == 0 {
				break
			}
			seen += got
			cookie = resp.GetDiscoverResponse().GetCookie()
		}
		if seen != 300 {
			t.Fatalf("limit %d: %d registrations over the pages, want 300", limit, seen)
		}
	}
	check(discoverRequest("empty", 10, nil))
	check(discoverRequest("bench", 10, []byte("not a cookie")))
	check(discoverRequest(strings.Repeat("n", rendezvous.MaxNamespaceLength+1), 10, nil))
}

// BenchmarkDiscoverWrite is the point's work for a DISCOVER answered with a
// page of 100 registrations of 180-byte records, up to the bytes written
// on the stream, without the transport: the message built and written with
// proto.Marshal and a varint writer, the message built and written field
// by field, and the page written from the store.
//
//	go test -run '^$' -bench DiscoverWrite -benchmem ./server
func BenchmarkDiscoverWrite(b *testing.B) {
	s, client := pointWithPage(b, rand.New(rand.NewPCG(5, 6)), DefaultResources(), 100, 180)
	req := Request{Message: discoverRequest("bench", 100, nil), Peer: client, Source: netip.MustParseAddr("192.0.2.1")}
	check := func(status rendezvous.Status, err error) {
		if status != rendezvous.StatusOK || err != nil {
			b.Fatal(status, err)
		}
	}
	b.Run("proto.Marshal", func(b *testing.B) {
		wr := msgio.NewVarintWriter(io.Discard)
		for b.Loop() {
			resp, status := s.HandleRequest(context.Background(), req)
			m, err := proto.Marshal(resp)
			if err == nil {
				err = wr.WriteMsg(m)
			}
			check(status, err)
		}
	})
	b.Run("message", func(b *testing.B) {
		for b.Loop() {
			resp, status := s.HandleRequest(context.Background(), req)
			out := s.responseBuffer()
			*out = appendDelimited(*out, resp)
			_, err := io.Discard.Write(*out)
			s.responses.Put(out)
			check(status, err)
		}
	})
	b.Run("page", func(b *testing.B) {
		for b.Loop() {
			out := s.responseBuffer()
			_, status := s.answer(context.Background(), req, out)
			_, err := io.Discard.Write(*out)
			s.responses.Put(out)
			check(status, err)
		}
	})
}
