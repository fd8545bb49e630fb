package server_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/x/rate"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// fuzzKey is a fixed key, so that the seed corpus holds records that verify.
func fuzzKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	key, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	return key, id
}

// fuzzSeeds are requests as encoded bytes: valid and invalid ones of every
// type.
func fuzzSeeds(t testing.TB) [][]byte {
	key, _ := fuzzKey(t)
	rec, err := rendezvous.SealPeerRecord(key, []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}, 1)
	if err != nil {
		t.Fatal(err)
	}
	legacy, _ := rendezvous.SealLegacyPeerRecord(key, []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}, 2)
	cookie := rendezvous.Cookie{Seq: 3, Namespace: "ns"}.Encode()
	noType := registerMsg("ns", rec, proto.Uint64(7200))
	noType.Type = nil
	msgs := []*pb.Message{
		registerMsg("ns", rec, proto.Uint64(7200)),
		registerMsg("ns", legacy, nil),
		registerMsg("", rec, proto.Uint64(1)),
		noType,
		discoverMsg("ns", 10, nil),
		discoverMsg("ns", 0, cookie),
		discoverMsg("", 1000, nil),
		unregisterMsg("ns"),
		{Type: pb.Message_DISCOVER.Enum()},
		{Type: pb.Message_REGISTER_RESPONSE.Enum()},
	}
	var out [][]byte
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, []byte{}, []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0x0f})
}

// FuzzHandleRequest feeds arbitrary bytes to the request handler of a point
// as requests from one peer, and checks the answers keep to the protocol.
func FuzzHandleRequest(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	_, remote := fuzzKey(f)
	st := memory.New()
	clock := newFakeClock()
	// Rates out of the way: every input reaches the handlers.
	rc := server.DefaultResources()
	fast := rate.Limit{RPS: 1e9, Burst: 1 << 30}
	rc.RegisterRate, rc.RegisterNetRate, rc.DiscoverRate, rc.DiscoverNetRate = fast, fast, fast, fast
	srv, err := server.New(testhost.New(f), st, server.WithClock(clock.Now), server.WithResources(rc))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pb.Message
		if err := proto.Unmarshal(data, &req); err != nil {
			return
		}
		clock.Advance(time.Second)
		resp, status := srv.HandleRequest(context.Background(), server.Request{Message: &req, Peer: remote})
		switch req.GetType() {
		case pb.Message_REGISTER:
			r := resp.GetRegisterResponse()
			if resp.GetType() != pb.Message_REGISTER_RESPONSE || r == nil || r.Status == nil || r.Ttl == nil || r.GetStatus() != status {
				t.Fatalf("REGISTER answered with %v", resp)
			}
			if status == rendezvous.StatusOK {
				found, err := st.Discover(context.Background(), nil, req.GetRegister().GetNs(), 0, 1000, clock.Now())
				if err != nil || !containsPeer(found, remote) {
					t.Fatalf("accepted registration not stored: %v", err)
				}
			}
		case pb.Message_DISCOVER:
			r := resp.GetDiscoverResponse()
			if resp.GetType() != pb.Message_DISCOVER_RESPONSE || r == nil || r.Status == nil || r.GetStatus() != status {
				t.Fatalf("DISCOVER answered with %v", resp)
			}
			if status == rendezvous.StatusOK && (r.Cookie == nil || proto.Size(resp) > server.DefaultMaxDiscoverResponseSize) {
				t.Fatalf("OK DISCOVER without a cookie or over the byte budget")
			}
			for _, reg := range r.GetRegistrations() {
				if reg.Ns == nil || reg.GetTtl() == 0 {
					t.Fatalf("registration without ns or ttl: %v", reg)
				}
			}
		default:
			if resp != nil {
				t.Fatalf("%v answered with %v", req.GetType(), resp)
			}
		}
	})
}

func containsPeer(regs []storeRegistration, p peer.ID) bool {
	for _, r := range regs {
		if r.Peer == p {
			return true
		}
	}
	return false
}
