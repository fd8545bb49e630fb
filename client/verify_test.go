package client

import (
	"crypto/rand"
	"fmt"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// testPage is a DISCOVER page of n registrations of distinct peers in
// namespaces ns-0, ns-1, ns-2, each with a genuine record; forged lists the
// indexes whose record was then spoiled, each in one of the ways a point
// could.
type testPage struct {
	regs   []*pb.Message_Register
	peers  []peer.ID // the peer of each registration
	forged map[int]bool
}

func newTestPage(t testing.TB, n int) testPage {
	t.Helper()
	p := testPage{forged: make(map[int]bool)}
	for i := range n {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := rendezvous.SealPeerRecord(key, []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 1000+i))}, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		p.regs = append(p.regs, &pb.Message_Register{Ns: proto.String(fmt.Sprintf("ns-%d", i%3)), SignedPeerRecord: rec, Ttl: proto.Uint64(3600)})
		p.peers = append(p.peers, id)
	}
	return p
}

// forge spoils the record of registration i in one of four ways.
func (p testPage) forge(t testing.TB, i int, other crypto.PrivKey) {
	t.Helper()
	rec := slices.Clone(p.regs[i].SignedPeerRecord)
	switch i % 4 {
	case 0: // a flipped bit of the signature, at the end of the envelope
		rec[len(rec)-1] ^= 1
	case 1: // garbage
		rec = []byte("not an envelope")
	case 2: // none at all
		rec = nil
	case 3: // the record of peers[i], signed by another key
		env, err := record.Seal(&peer.PeerRecord{PeerID: p.peers[i], Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}, Seq: 1}, other)
		if err != nil {
			t.Fatal(err)
		}
		if rec, err = env.Marshal(); err != nil {
			t.Fatal(err)
		}
	}
	p.regs[i].SignedPeerRecord = rec
	p.forged[i] = true
}

func TestOpenRegistrationsKeepsOrderAndDropsForgedRecords(t *testing.T) {
	const n = 200
	page := newTestPage(t, n)
	other, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for i := 3; i < n; i += 7 {
		page.forge(t, i, other)
	}
	point := page.peers[0]
	for _, workers := range []int{1, 2, 3, 8, 64, 0} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			got := openRegistrations(point, "", page.regs, workers)
			var want []peer.ID
			for i, id := range page.peers {
				if !page.forged[i] {
					want = append(want, id)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("kept %d registrations, want the %d genuine ones of %d", len(got), len(want), n)
			}
			for i, r := range got {
				if r.Peer.ID != want[i] {
					t.Fatalf("registration %d is %s, want %s: the order of the page is lost", i, r.Peer.ID, want[i])
				}
				if r.Point != point || len(r.Peer.Addrs) != 1 || r.Namespace == "" {
					t.Fatalf("registration %d is %+v, want its point, address and namespace", i, r)
				}
			}
		})
	}
}

func TestOpenRegistrationsParallelIsSerial(t *testing.T) {
	const n = 100
	page := newTestPage(t, n)
	other, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 5 {
		page.forge(t, i, other)
	}
	point := page.peers[1]
	for _, ns := range []string{"", "ns-1"} {
		serial := openRegistrations(point, ns, page.regs, 1)
		for _, workers := range []int{2, 4, 16, 0} {
			parallel := openRegistrations(point, ns, page.regs, workers)
			if !slices.EqualFunc(serial, parallel, sameRegistration) {
				t.Fatalf("ns %q, %d workers: %d registrations differ from the %d of serial verification", ns, workers, len(parallel), len(serial))
			}
		}
		if ns != "" {
			for _, r := range serial {
				if r.Namespace != ns {
					t.Fatalf("asked for %q, kept a registration in %q", ns, r.Namespace)
				}
			}
		}
	}
}

func sameRegistration(a, b Registration) bool {
	return a.Namespace == b.Namespace && a.Peer.ID == b.Peer.ID && slices.EqualFunc(a.Peer.Addrs, b.Peer.Addrs, ma.Multiaddr.Equal) &&
		a.Seq == b.Seq && a.TTL == b.TTL && string(a.Record) == string(b.Record) && a.Point == b.Point
}

// BenchmarkOpenRegistrations verifies a page of 1000 genuine records, the
// most a DISCOVER brings, on one goroutine and on GOMAXPROCS.
func BenchmarkOpenRegistrations(b *testing.B) {
	page := newTestPage(b, 1000)
	for _, bc := range []struct {
		name    string
		workers int
	}{{"serial", 1}, {"parallel", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if got := openRegistrations(page.peers[0], "", page.regs, bc.workers); len(got) != 1000 {
					b.Fatalf("kept %d of 1000", len(got))
				}
			}
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
