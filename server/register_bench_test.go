package server_test

import (
	"context"
	"crypto/rand"
	"net/netip"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// BenchmarkRegisterRefresh is the point's work for a refresh, the REGISTER
// a peer repeats with the same record until its addresses change, without
// the transport: with the record cache (the default) and without it.
//
//	go test -run '^$' -bench RegisterRefresh -benchmem ./server
func BenchmarkRegisterRefresh(b *testing.B) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	rec, err := rendezvous.SealPeerRecord(key, []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}, 1)
	if err != nil {
		b.Fatal(err)
	}
	req := &pb.Message{Type: pb.Message_REGISTER.Enum(), Register: &pb.Message_Register{Ns: proto.String("bench"), SignedPeerRecord: rec, Ttl: proto.Uint64(7200)}}
	for _, tc := range []struct {
		name  string
		cache int
	}{{"cache", server.DefaultRecordCacheSize}, {"no-cache", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			rc := server.DefaultResources()
			rc.RecordCacheSize = tc.cache
			// The peer is allowlisted: its refreshes come faster than any
			// source's rate, and the benchmark is of the work behind it.
			srv, err := server.New(testhost.New(b), memory.New(), server.WithResources(rc), server.WithAllowlist(server.Allowlist{Peers: []peer.ID{id}}))
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			for b.Loop() {
				if _, status := srv.HandleRequest(context.Background(), server.Request{Message: req, Peer: id, Source: netip.MustParseAddr("192.0.2.1")}); status != rendezvous.StatusOK {
					b.Fatal(status)
				}
			}
		})
	}
}
