package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	xrate "github.com/libp2p/go-libp2p/x/rate"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
)

// The tests of this file run rendezvous points, each a libp2p host of its
// own with server.New on its own postgres.Open of one schema, and talk to
// them over the wire with raw protocol messages.

// newPoint starts a point on its own store of schema.
func newPoint(t *testing.T, dsn, schema string, rc server.Resources) peer.AddrInfo {
	t.Helper()
	st := open(t, dsn, schema)
	h := testhost.New(t)
	srv, err := server.New(h, st, server.WithResources(rc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

// newPeer is a client host connected to every point.
func newPeer(ctx context.Context, t *testing.T, points ...peer.AddrInfo) host.Host {
	t.Helper()
	h := testhost.New(t)
	for _, p := range points {
		if err := h.Connect(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// roundTrip sends req to point on a stream of its own and reads the answer.
func roundTrip(ctx context.Context, h host.Host, point peer.ID, req *pb.Message) (*pb.Message, error) {
	s, err := h.NewStream(ctx, point, rendezvous.ProtocolID)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := pbio.NewDelimitedWriter(s).WriteMsg(req); err != nil {
		_ = s.Reset()
		return nil, err
	}
	_ = s.CloseWrite()
	var resp pb.Message
	if err := pbio.NewDelimitedReader(s, 1<<20).ReadMsg(&resp); err != nil {
		_ = s.Reset()
		return nil, err
	}
	return &resp, nil
}

// registerVersion registers h in ns at point with a peer record of
// sequence number version, so that discoverers tell versions apart.
func registerVersion(ctx context.Context, h host.Host, point peer.ID, ns string, version uint64) error {
	rec, err := rendezvous.SealPeerRecord(h.Peerstore().PrivKey(h.ID()), []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}, version)
	if err != nil {
		return err
	}
	resp, err := roundTrip(ctx, h, point, &pb.Message{
		Type: pb.Message_REGISTER.Enum(),
		Register: &pb.Message_Register{
			Ns:               proto.String(ns),
			SignedPeerRecord: rec,
			Ttl:              proto.Uint64(uint64(rendezvous.DefaultTTL / time.Second)),
		},
	})
	if err != nil {
		return err
	}
	r := resp.GetRegisterResponse()
	if r == nil {
		return fmt.Errorf("answer to REGISTER is a %s", resp.GetType())
	}
	if r.GetStatus() != rendezvous.StatusOK {
		return &rendezvous.Error{Status: r.GetStatus(), Text: r.GetStatusText()}
	}
	return nil
}

// found is one registration discovered: its peer, namespace and the
// sequence number of its record.
type found struct {
	peer    peer.ID
	ns      string
	version uint64
}

type nsPeer struct {
	ns   string
	peer peer.ID
}

func discoverPage(ctx context.Context, h host.Host, point peer.ID, ns string, limit int, cookie []byte) ([]found, []byte, error) {
	resp, err := roundTrip(ctx, h, point, &pb.Message{
		Type:     pb.Message_DISCOVER.Enum(),
		Discover: &pb.Message_Discover{Ns: proto.String(ns), Limit: proto.Uint64(uint64(limit)), Cookie: cookie},
	})
	if err != nil {
		return nil, nil, err
	}
	r := resp.GetDiscoverResponse()
	if r == nil {
		return nil, nil, fmt.Errorf("answer to DISCOVER is a %s", resp.GetType())
	}
	if r.GetStatus() != rendezvous.StatusOK {
		return nil, nil, &rendezvous.Error{Status: r.GetStatus(), Text: r.GetStatusText()}
	}
	var out []found
	for _, reg := range r.GetRegistrations() {
		rec, _, err := rendezvous.OpenSignedPeerRecord(reg.GetSignedPeerRecord())
		if err != nil {
			return nil, nil, fmt.Errorf("discovered record: %w", err)
		}
		out = append(out, found{peer: rec.PeerID, ns: reg.GetNs(), version: rec.Seq})
	}
	return out, r.GetCookie(), nil
}

func mustRegister(ctx context.Context, t *testing.T, h host.Host, point peer.ID, ns string) {
	t.Helper()
	if err := registerVersion(ctx, h, point, ns, 1); err != nil {
		t.Fatalf("REGISTER of %s in %q: %v", h.ID(), ns, err)
	}
}

func mustDiscover(ctx context.Context, t *testing.T, h host.Host, point peer.ID, ns string, cookie []byte) ([]found, []byte) {
	t.Helper()
	regs, next, err := discoverPage(ctx, h, point, ns, 0, cookie)
	if err != nil {
		t.Fatalf("DISCOVER of %q: %v", ns, err)
	}
	return regs, next
}

// TestPointsShareDatabase: a registration made at one point is discovered
// at the other, and a cookie of one continues at the other.
func TestPointsShareDatabase(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := newPoint(t, dsn, schema, server.DefaultResources())
	b := newPoint(t, dsn, schema, server.DefaultResources())
	p1, p2, reader := newPeer(ctx, t, a, b), newPeer(ctx, t, a, b), newPeer(ctx, t, a, b)

	mustRegister(ctx, t, p1, a.ID, "shared")
	regs, _ := mustDiscover(ctx, t, reader, b.ID, "shared", nil)
	if len(regs) != 1 || regs[0].peer != p1.ID() || regs[0].ns != "shared" {
		t.Fatalf("B discovers %v, want %s registered at A", regs, p1.ID())
	}
	regs, cookieA := mustDiscover(ctx, t, reader, a.ID, "shared", nil)
	if len(regs) != 1 {
		t.Fatalf("A discovers %v", regs)
	}
	mustRegister(ctx, t, p2, b.ID, "shared")
	regs, cookieB := mustDiscover(ctx, t, reader, b.ID, "shared", cookieA)
	if len(regs) != 1 || regs[0].peer != p2.ID() {
		t.Fatalf("B, from A's cookie, discovers %v, want only %s", regs, p2.ID())
	}
	regs, _ = mustDiscover(ctx, t, reader, a.ID, "shared", cookieB)
	if len(regs) != 0 {
		t.Fatalf("A, from B's cookie, discovers %v, want nothing", regs)
	}
	// A re-registration at A gets a new sequence number: B's cookie sees it.
	if err := registerVersion(ctx, p1, a.ID, "shared", 2); err != nil {
		t.Fatal(err)
	}
	regs, _ = mustDiscover(ctx, t, reader, b.ID, "shared", cookieB)
	if len(regs) != 1 || regs[0].peer != p1.ID() || regs[0].version != 2 {
		t.Fatalf("B, from its cookie, after A's refresh, discovers %v, want %s version 2", regs, p1.ID())
	}
}

// TestPointsSharePeerCap: the per-peer cap counts the registrations made at
// every point.
func TestPointsSharePeerCap(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc := server.DefaultResources()
	rc.MaxRegistrationsPerPeer = 3
	a := newPoint(t, dsn, schema, rc)
	b := newPoint(t, dsn, schema, rc)
	p, q := newPeer(ctx, t, a, b), newPeer(ctx, t, a, b)

	mustRegister(ctx, t, p, a.ID, "ns1")
	mustRegister(ctx, t, p, a.ID, "ns2")
	mustRegister(ctx, t, p, b.ID, "ns3")
	for _, pt := range []peer.AddrInfo{a, b} {
		err := registerVersion(ctx, p, pt.ID, "ns4", 1)
		var e *rendezvous.Error
		if !errors.As(err, &e) || e.Status != rendezvous.StatusNotAuthorized {
			t.Fatalf("4th namespace at %s: %v, want E_NOT_AUTHORIZED", pt.ID, err)
		}
	}
	// A refresh is always allowed, at either point; another peer is not
	// held by p's cap.
	if err := registerVersion(ctx, p, b.ID, "ns1", 2); err != nil {
		t.Fatalf("refreshing ns1 at B: %v", err)
	}
	mustRegister(ctx, t, q, b.ID, "ns4")
	regs, _ := mustDiscover(ctx, t, q, a.ID, "", nil)
	if len(regs) != 4 {
		t.Fatalf("A discovers %v, want p in ns1..ns3 and q in ns4", regs)
	}
}

// TestPointsConcurrentCookies: peers register, and register again, at both
// points at once, while a reader pages through every namespace with small
// pages, alternating points, each page continuing the cookie of the last.
// The reader sees each version of a registration at most once, versions in
// order, and the last acknowledged version of every registration. With 16
// writers, each point's store applies their REGISTERs in batches.
func TestPointsConcurrentCookies(t *testing.T) {
	t.Parallel()
	const (
		writers  = 16
		nss      = 12
		versions = 3
		pageSize = 7
		maxPages = 20000
	)
	dsn, schema := newSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	points := []peer.AddrInfo{
		newPoint(t, dsn, schema, loopbackLoad()),
		newPoint(t, dsn, schema, loopbackLoad()),
	}
	hosts := make([]host.Host, writers)
	for i := range hosts {
		hosts[i] = newPeer(ctx, t, points...)
	}
	reader := newPeer(ctx, t, points...)

	var (
		mu    sync.Mutex
		acked = map[nsPeer]uint64{} // the last version acknowledged
		wg    sync.WaitGroup
	)
	writing := make(chan struct{})
	for w, h := range hosts {
		wg.Go(func() {
			n := 0
			for v := uint64(1); v <= versions; v++ {
				for k := range nss {
					ns := fmt.Sprintf("cc-%02d", (k+w)%nss)
					pt := points[(n+w)%2].ID
					n++
					if err := registerVersion(ctx, h, pt, ns, v); err != nil {
						t.Errorf("REGISTER of writer %d in %s, version %d, at %s: %v", w, ns, v, pt, err)
						return
					}
					mu.Lock()
					acked[nsPeer{ns, h.ID()}] = v
					mu.Unlock()
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(writing)
	}()

	// Page until a page that began after the writers finished comes back
	// empty.
	last := map[nsPeer]uint64{}
	var cookie []byte
	pages, seen, repeats := 0, 0, 0
	for done := false; ; pages++ {
		if pages == maxPages {
			t.Fatalf("still paging after %d pages", pages)
		}
		select {
		case <-writing:
			done = true
		default:
		}
		pt := points[pages%2].ID
		regs, next, err := discoverPage(ctx, reader, pt, "", pageSize, cookie)
		if err != nil {
			t.Fatalf("page %d at %s: %v", pages, pt, err)
		}
		if len(regs) > pageSize {
			t.Fatalf("page %d holds %d registrations, limit %d", pages, len(regs), pageSize)
		}
		cookie = next
		for _, r := range regs {
			k := nsPeer{r.ns, r.peer}
			if r.version <= last[k] {
				repeats++
				t.Errorf("page %d at %s: %v version %d after version %d", pages, pt, k, r.version, last[k])
			}
			last[k] = r.version
			seen++
		}
		if done && len(regs) == 0 {
			break
		}
	}
	if t.Failed() {
		return
	}
	for k, v := range acked {
		if last[k] != v {
			t.Errorf("%v: last version seen %d, last acknowledged %d", k, last[k], v)
		}
	}
	for k := range last {
		if _, ok := acked[k]; !ok {
			t.Errorf("%v seen, never acknowledged", k)
		}
	}
	superseded := writers*nss*versions - seen
	t.Logf("%d REGISTERs acknowledged (%d registrations × %d versions) at 2 points; reader: %d pages alternating points, %d versions seen, %d superseded before it got to them, %d repeats",
		writers*nss*versions, len(acked), versions, pages, seen, superseded, repeats)
}

// TestPointsShareSourceQuota: the quota of one address counts the
// registrations made at every point; peers of another address are not held.
// Every client here connects from 127.0.0.1, one address, but for the last,
// bound to 127.0.0.2.
func TestPointsShareSourceQuota(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc := server.DefaultResources()
	rc.MaxRegistrationsPerIPv4 = 3
	a := newPoint(t, dsn, schema, rc)
	b := newPoint(t, dsn, schema, rc)
	points := []peer.AddrInfo{a, b}
	accepted := 0
	for i := range 6 {
		p := newPeer(ctx, t, points[i%2])
		err := registerVersion(ctx, p, points[i%2].ID, fmt.Sprintf("ns%d", i), 1)
		var e *rendezvous.Error
		switch {
		case err == nil:
			accepted++
		case errors.As(err, &e) && e.Status == rendezvous.StatusNotAuthorized && e.Text == "quota: 3 live registrations per IPv4 /32 reached":
		default:
			t.Fatalf("peer %d at point %d: %v", i, i%2, err)
		}
	}
	if accepted != 3 {
		t.Fatalf("%d registrations from 127.0.0.1 accepted at two points, want the quota 3", accepted)
	}
	other := testhost.NewAt(t, "127.0.0.2")
	for _, pt := range points {
		if err := other.Connect(ctx, pt); err != nil {
			t.Fatal(err)
		}
	}
	if err := registerVersion(ctx, other, b.ID, "ns", 1); err != nil {
		t.Fatalf("a peer of another address: %v", err)
	}
	regs, _ := mustDiscover(ctx, t, other, a.ID, "", nil)
	if len(regs) != 4 {
		t.Fatalf("A discovers %v, want 4 registrations", regs)
	}
}

// loopbackLoad is the default resources with the per-source rates and
// quotas lifted: every client of these tests is on 127.0.0.1, and a load
// from one address is what they would stop.
func loopbackLoad() server.Resources {
	rc := server.DefaultResources()
	fast := xrate.Limit{RPS: 1e9, Burst: 1 << 30}
	rc.RegisterRate, rc.RegisterNetRate, rc.DiscoverRate, rc.DiscoverNetRate = fast, fast, fast, fast
	rc.MaxRegistrationsPerIPv4, rc.MaxRegistrationsPerIPv4Net = 1<<30, 1<<30
	return rc
}
