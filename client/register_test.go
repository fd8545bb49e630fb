package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// registered reports whether id is registered in ns at point, asking
// without a cookie, and returns its registration.
func registered(t *testing.T, obs *client.Client, point peer.ID, ns string, id peer.ID) (client.Registration, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	regs, _, err := obs.DiscoverAt(ctx, point, ns, 0, nil)
	if err != nil {
		t.Fatalf("discovering at the point: %v", err)
	}
	for _, r := range regs {
		if r.Peer.ID == id {
			return r, true
		}
	}
	return client.Registration{}, false
}

// during calls check every interval for d; check fails the test itself.
func during(d, interval time.Duration, check func()) {
	end := time.Now().Add(d)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for time.Now().Before(end) {
		check()
		<-tick.C
	}
}

// eventually calls cond every interval until it holds or d has passed.
func eventually(t *testing.T, d, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("after %v: %s", d, what)
		}
		<-tick.C
	}
}

func TestRegisterAndDiscoverSurviveDeadAndResettingPoints(t *testing.T) {
	checkLeaks(t)
	good, reset, dead := newPoint(t), newResetPoint(t), deadPoint(t)
	points := client.WithPoints(info(good), dead, info(reset))
	a, ha := newClient(t, points, client.WithRequestTimeout(5*time.Second))
	// b knows the same points, two of them by multiaddr.
	var p2pAddrs []ma.Multiaddr
	for _, h := range []peer.AddrInfo{info(good), info(reset)} {
		addrs, err := peer.AddrInfoToP2pAddrs(&h)
		if err != nil {
			t.Fatal(err)
		}
		p2pAddrs = append(p2pAddrs, addrs...)
	}
	b, _ := newClient(t, client.WithPointAddrs(p2pAddrs...), client.WithPoints(dead), client.WithRequestTimeout(5*time.Second))
	ctx := ctxFor(t, 60*time.Second)

	checkResults := func(op string, results client.Results) {
		t.Helper()
		if len(results) != 3 {
			t.Fatalf("%s: %d results, want one per point", op, len(results))
		}
		for _, r := range results {
			switch r.Point {
			case good.ID():
				if r.Err != nil {
					t.Fatalf("%s: the good point failed: %v", op, r.Err)
				}
			case dead.ID, reset.ID():
				var rerr *rendezvous.Error
				if r.Err == nil || errors.As(r.Err, &rerr) {
					t.Fatalf("%s at %s: %v, want a failure of the transport", op, r.Point, r.Err)
				}
			default:
				t.Fatalf("%s: result for unknown point %s", op, r.Point)
			}
		}
		if results.OK() != 1 || results.Err() == nil {
			t.Fatalf("%s: %d points OK, joined error %v", op, results.OK(), results.Err())
		}
	}

	results, err := a.Register(ctx, "survive", time.Hour)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	checkResults("Register", results)
	if results[0].TTL != time.Hour {
		t.Fatalf("granted %v by the good point, want 1h", results[0].TTL)
	}

	regs, results, err := b.Discover(ctx, "survive", 0)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	checkResults("Discover", results)
	if len(regs) != 1 || regs[0].Peer.ID != ha.ID() || regs[0].Point != good.ID() {
		t.Fatalf("discovered %+v, want %s through the good point", regs, ha.ID())
	}

	results, err = a.Unregister(ctx, "survive")
	if err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	if _, ok := registered(t, b, good.ID(), "survive", ha.ID()); ok {
		t.Fatal("still registered after Unregister")
	}
	if len(results) != 3 {
		t.Fatalf("Unregister: %d results", len(results))
	}
}

// TestRefreshKeepsShortTTLAlive: a 2s registration stays for three TTLs,
// and disappears at Unregister and at Close, for good.
func TestRefreshKeepsShortTTLAlive(t *testing.T) {
	checkLeaks(t)
	point := newPoint(t)
	c, h := newClient(t, client.WithPoints(info(point)))
	obs, _ := newClient(t, client.WithPoints(info(point)))
	ctx := ctxFor(t, 60*time.Second)
	const ttl = 2 * time.Second

	results, err := c.Register(ctx, "short", ttl)
	if err != nil || results[0].TTL != ttl {
		t.Fatalf("Register: %v %+v, want %v granted", err, results, ttl)
	}
	during(3*ttl+500*time.Millisecond, 200*time.Millisecond, func() {
		if _, ok := registered(t, obs, point.ID(), "short", h.ID()); !ok {
			t.Fatal("the registration lapsed: it was not refreshed in time")
		}
	})

	if _, err := c.Unregister(ctx, "short"); err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	during(ttl+500*time.Millisecond, 250*time.Millisecond, func() {
		if _, ok := registered(t, obs, point.ID(), "short", h.ID()); ok {
			t.Fatal("registered after Unregister: the refresh goes on")
		}
	})

	if _, err := c.Register(ctx, "short", ttl); err != nil {
		t.Fatalf("Register again: %v", err)
	}
	if _, ok := registered(t, obs, point.ID(), "short", h.ID()); !ok {
		t.Fatal("not registered again")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	during(ttl+500*time.Millisecond, 250*time.Millisecond, func() {
		if _, ok := registered(t, obs, point.ID(), "short", h.ID()); ok {
			t.Fatal("registered after Close")
		}
	})
	if _, err := c.Register(ctx, "short", ttl); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Register after Close: %v, want ErrClosed", err)
	}
}

// TestAddressChangeReRegisters: a new listen address reaches the point at
// once, with a newer record, without waiting for the refresh.
func TestAddressChangeReRegisters(t *testing.T) {
	checkLeaks(t)
	point := newPoint(t)
	c, h := newClient(t, client.WithPoints(info(point)))
	obs, _ := newClient(t, client.WithPoints(info(point)))
	ctx := ctxFor(t, 60*time.Second)

	if _, err := c.Register(ctx, "moving", time.Hour); err != nil {
		t.Fatal(err)
	}
	before, ok := registered(t, obs, point.ID(), "moving", h.ID())
	if !ok {
		t.Fatal("not registered")
	}
	if err := h.Network().Listen(ma.StringCast("/ip4/127.0.0.1/tcp/0")); err != nil {
		t.Fatal(err)
	}
	var after client.Registration
	eventually(t, 20*time.Second, 100*time.Millisecond, "the new address was not registered", func() bool {
		after, _ = registered(t, obs, point.ID(), "moving", h.ID())
		return len(after.Peer.Addrs) == len(before.Peer.Addrs)+1
	})
	if after.Seq <= before.Seq {
		t.Fatalf("the new record has seq %d, not above %d", after.Seq, before.Seq)
	}
	for _, a := range h.Addrs() {
		if !slices.ContainsFunc(after.Peer.Addrs, a.Equal) {
			t.Fatalf("registered %v, missing %s", after.Peer.Addrs, a)
		}
	}
}

// TestRegisterFitsIn4096Bytes: a host with many addresses still registers
// at points that read at most 4096 bytes, without /p2p/ suffixes.
func TestRegisterFitsIn4096Bytes(t *testing.T) {
	checkLeaks(t)
	sp := newScriptedPoint(t, func(_ int, req *pb.Message) *pb.Message {
		return &pb.Message{
			Type: pb.Message_REGISTER_RESPONSE.Enum(),
			RegisterResponse: &pb.Message_RegisterResponse{
				Status: pb.Message_OK.Enum(), StatusText: proto.String(""), Ttl: proto.Uint64(req.GetRegister().GetTtl()),
			},
		}
	})
	var h2 peer.ID
	many := func() []ma.Multiaddr {
		var out []ma.Multiaddr
		for i := range 300 {
			out = append(out, ma.StringCast(fmt.Sprintf("/ip6/2001:db8::%x/tcp/4001/p2p/%s", i+1, h2)))
		}
		return out
	}
	c, h := newClient(t, client.WithPoints(info(sp)), client.WithAddrs(many))
	h2 = h.ID()
	ctx := ctxFor(t, 30*time.Second)
	if _, err := c.Register(ctx, "big", time.Hour); err != nil {
		t.Fatal(err)
	}
	if size := sp.maxSize(); size > client.DefaultMaxRegisterSize || size == 0 {
		t.Fatalf("REGISTER of %d bytes, want at most %d", size, client.DefaultMaxRegisterSize)
	}
	rec, _, err := rendezvous.OpenSignedPeerRecord(sp.lastRecord())
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Addrs) == 0 || len(rec.Addrs) >= 300 {
		t.Fatalf("record holds %d addresses", len(rec.Addrs))
	}
	for _, a := range rec.Addrs {
		if strings.Contains(a.String(), "/p2p/") {
			t.Fatalf("address %s keeps its /p2p/ suffix", a)
		}
	}
}

// TestAutoPoints: with WithAutoPoints, a peer becomes a point when identify
// shows it serves the protocol, and a registration made before reaches it.
func TestAutoPoints(t *testing.T) {
	checkLeaks(t)
	point := newPoint(t)
	other := newHost(t) // connected, but no point
	c, h := newClient(t, client.WithAutoPoints())
	obs, _ := newClient(t, client.WithPoints(info(point)))
	ctx := ctxFor(t, 60*time.Second)

	if _, err := c.Register(ctx, "auto", time.Hour); !errors.Is(err, client.ErrNoPoints) {
		t.Fatalf("Register with no point yet: %v, want ErrNoPoints", err)
	}
	for _, p := range []peer.AddrInfo{info(other), info(point)} {
		if err := h.Connect(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, 100*time.Millisecond, "the point was not registered at", func() bool {
		_, ok := registered(t, obs, point.ID(), "auto", h.ID())
		return ok
	})
	if got := c.Points(); len(got) != 1 || got[0] != point.ID() {
		t.Fatalf("points %v, want only %s", got, point.ID())
	}
	regs, _, err := c.Discover(ctx, "auto", 0)
	if err != nil || len(regs) != 0 {
		t.Fatalf("Discover: %v %v, want nothing but ourselves, skipped", regs, err)
	}
	// Dropped at disconnection.
	if err := h.Network().ClosePeer(point.ID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, 50*time.Millisecond, "the point was not dropped", func() bool {
		return len(c.Points()) == 0 && h.Network().Connectedness(point.ID()) != network.Connected
	})
}

// TestFailedPointRetriedWithBackoff: a point that refuses a REGISTER is
// asked again after a backoff, and left alone once it grants it.
func TestFailedPointRetriedWithBackoff(t *testing.T) {
	checkLeaks(t)
	sp := newScriptedPoint(t, func(n int, req *pb.Message) *pb.Message {
		status, ttl := pb.Message_E_UNAVAILABLE, uint64(0)
		if n >= 2 {
			status, ttl = pb.Message_OK, req.GetRegister().GetTtl()
		}
		return &pb.Message{
			Type: pb.Message_REGISTER_RESPONSE.Enum(),
			RegisterResponse: &pb.Message_RegisterResponse{
				Status: status.Enum(), StatusText: proto.String("busy"), Ttl: proto.Uint64(ttl),
			},
		}
	})
	c, _ := newClient(t, client.WithPoints(info(sp)), client.WithBackoff(50*time.Millisecond, 200*time.Millisecond))
	ctx := ctxFor(t, 30*time.Second)
	results, err := c.Register(ctx, "retry", time.Hour)
	if !errors.Is(err, client.ErrNoPointReached) || rendezvous.StatusOf(results[0].Err) != rendezvous.StatusUnavailable {
		t.Fatalf("Register: %v %+v, want the point's E_UNAVAILABLE", err, results)
	}
	eventually(t, 20*time.Second, 20*time.Millisecond, "the point was not asked again", func() bool { return sp.requests() >= 3 })
	during(time.Second, 100*time.Millisecond, func() {
		if n := sp.requests(); n != 3 {
			t.Fatalf("%d REGISTER requests after the grant, want 3", n)
		}
	})
}
