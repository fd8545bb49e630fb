package server_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store"
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

// BenchmarkDiscover100 is the point's work for a DISCOVER answered with a
// page of 100 registrations (the memory store), without the transport.
//
//	go test -run '^$' -bench Discover100 -benchmem ./server
func BenchmarkDiscover100(b *testing.B) {
	st := memory.New()
	fillBench(b, st, 100)
	client, _ := peer.Decode("12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf")
	srv, err := server.New(testhost.New(b), st, server.WithAllowlist(server.Allowlist{Peers: []peer.ID{client}}))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	req := &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{Ns: proto.String("bench"), Limit: proto.Uint64(100)}}
	for b.Loop() {
		resp, status := srv.HandleRequest(context.Background(), server.Request{Message: req, Peer: client, Source: netip.MustParseAddr("192.0.2.1")})
		if status != rendezvous.StatusOK || len(resp.GetDiscoverResponse().GetRegistrations()) != 100 {
			b.Fatal(status, len(resp.GetDiscoverResponse().GetRegistrations()))
		}
	}
}

// fillBench registers n new peers in namespace "bench" of st, each with a
// signed record of its own, for an hour.
func fillBench(b *testing.B, st store.Store, n int) {
	b.Helper()
	now := time.Now()
	for i := range n {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(key)
		rec, err := rendezvous.SealPeerRecord(key, []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/192.0.2.%d/tcp/4001", i))}, 1)
		if err != nil {
			b.Fatal(err)
		}
		_, kept, err := rendezvous.VerifyRegistrationRecord(rec, id, server.DefaultResources().MaxRecordSize)
		if err != nil {
			b.Fatal(err)
		}
		reg := store.Registration{Namespace: "bench", Peer: id, Record: kept, Expires: now.Add(time.Hour)}
		if _, err := st.Register(context.Background(), reg, store.Limits{}, now); err != nil {
			b.Fatal(err)
		}
	}
}
