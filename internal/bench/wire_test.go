package bench

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

func marshal(t *testing.T, m *pb.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func discoverAnswer(status rendezvous.Status, text string, regs ...*pb.Message_Register) *pb.Message {
	return &pb.Message{Type: pb.Message_DISCOVER_RESPONSE.Enum(), DiscoverResponse: &pb.Message_DiscoverResponse{
		Registrations: regs, Cookie: []byte("cookie"), Status: status.Enum(), StatusText: proto.String(text),
	}}
}

func registration(ns string, record []byte) *pb.Message_Register {
	return &pb.Message_Register{Ns: proto.String(ns), SignedPeerRecord: record, Ttl: proto.Uint64(7200)}
}

func TestCheckAnswer(t *testing.T) {
	rec := []byte("record")
	page := make([]*pb.Message_Register, 100)
	for i := range page {
		page[i] = registration("bench-1", rec)
	}
	registered := &pb.Message{Type: pb.Message_REGISTER_RESPONSE.Enum(), RegisterResponse: &pb.Message_RegisterResponse{
		Status: rendezvous.StatusOK.Enum(), StatusText: proto.String(""), Ttl: proto.Uint64(7200)}}
	refused := &pb.Message{Type: pb.Message_REGISTER_RESPONSE.Enum(), RegisterResponse: &pb.Message_RegisterResponse{
		Status: rendezvous.StatusNotAuthorized.Enum(), StatusText: proto.String("peer has 1000 registrations already")}}
	for _, tc := range []struct {
		name  string
		ans   []byte
		want  pb.Message_MessageType
		limit int
		regs  int
		err   string // part of the error's text; "" for none
	}{
		{"registered", marshal(t, registered), pb.Message_REGISTER_RESPONSE, 100, 0, ""},
		{"register refused", marshal(t, refused), pb.Message_REGISTER_RESPONSE, 100, 0, "E_NOT_AUTHORIZED"},
		{"page of 100", marshal(t, discoverAnswer(rendezvous.StatusOK, "", page...)), pb.Message_DISCOVER_RESPONSE, 100, 100, ""},
		{"empty page", marshal(t, discoverAnswer(rendezvous.StatusOK, "")), pb.Message_DISCOVER_RESPONSE, 100, 0, ""},
		{"page over the limit", marshal(t, discoverAnswer(rendezvous.StatusOK, "", page...)), pb.Message_DISCOVER_RESPONSE, 99, 0, "more than the limit"},
		{"discover refused", marshal(t, discoverAnswer(rendezvous.StatusUnavailable, "rate limit")), pb.Message_DISCOVER_RESPONSE, 100, 0, "rate limit"},
		{"other namespace", marshal(t, discoverAnswer(rendezvous.StatusOK, "", registration("bench-1", rec), registration("bench-2", rec))), pb.Message_DISCOVER_RESPONSE, 100, 0, `"bench-2"`},
		{"no record", marshal(t, discoverAnswer(rendezvous.StatusOK, "", registration("bench-1", nil))), pb.Message_DISCOVER_RESPONSE, 100, 0, "without a signed peer record"},
		{"no namespace", marshal(t, discoverAnswer(rendezvous.StatusOK, "", &pb.Message_Register{SignedPeerRecord: rec})), pb.Message_DISCOVER_RESPONSE, 100, 0, "without a namespace"},
		{"wrong type", marshal(t, registered), pb.Message_DISCOVER_RESPONSE, 100, 0, "REGISTER_RESPONSE"},
		{"no type", marshal(t, &pb.Message{RegisterResponse: registered.RegisterResponse}), pb.Message_REGISTER_RESPONSE, 100, 0, "want REGISTER_RESPONSE"},
		{"truncated", marshal(t, discoverAnswer(rendezvous.StatusOK, "", page...))[:500], pb.Message_DISCOVER_RESPONSE, 100, 0, errMalformed.Error()},
		{"not protobuf", []byte{0xff, 0xff, 0xff}, pb.Message_DISCOVER_RESPONSE, 100, 0, errMalformed.Error()},
	} {
		regs, err := checkAnswer(tc.ans, tc.want, "bench-1", tc.limit)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.err)
		case regs != tc.regs:
			t.Errorf("%s: %d registrations, want %d", tc.name, regs, tc.regs)
		}
	}
	// A refusal is the protocol's error, its status kept.
	_, err := checkAnswer(marshal(t, refused), pb.Message_REGISTER_RESPONSE, "bench-1", 100)
	var re *rendezvous.Error
	if !errors.As(err, &re) || re.Status != rendezvous.StatusNotAuthorized {
		t.Fatalf("refusal: %v, want a rendezvous error of E_NOT_AUTHORIZED", err)
	}
}

// BenchmarkCheckDiscoverAnswer is the load generator's check of a page of
// 100 registrations: walking its wire format, and decoding it with
// proto.Unmarshal as a client does.
//
//	go test -run '^$' -bench CheckDiscoverAnswer -benchmem ./internal/bench
func BenchmarkCheckDiscoverAnswer(b *testing.B) {
	page := make([]*pb.Message_Register, 100)
	for i := range page {
		page[i] = registration("bench-1", make([]byte, 150))
	}
	ans, err := proto.Marshal(discoverAnswer(rendezvous.StatusOK, "", page...))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("wire", func(b *testing.B) {
		for b.Loop() {
			if n, err := checkAnswer(ans, pb.Message_DISCOVER_RESPONSE, "bench-1", 100); err != nil || n != 100 {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var m pb.Message
			if err := proto.Unmarshal(ans, &m); err != nil || len(m.GetDiscoverResponse().GetRegistrations()) != 100 {
				b.Fatal(err)
			}
		}
	})
}
