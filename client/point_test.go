package client_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

func TestRegisterDiscoverUnregisterAtOnePoint(t *testing.T) {
	checkLeaks(t)
	point := newPoint(t)
	a, ha := newClient(t, client.WithPoints(info(point)))
	b, _ := newClient(t, client.WithPoints(info(point)))
	ctx := ctxFor(t, 30*time.Second)

	granted, err := a.RegisterAt(ctx, point.ID(), "chat", 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if granted != 3*time.Hour {
		t.Fatalf("granted %v, want 3h", granted)
	}
	regs, cookie, err := b.DiscoverAt(ctx, point.ID(), "chat", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || regs[0].Peer.ID != ha.ID() || regs[0].Namespace != "chat" || regs[0].TTL != 3*time.Hour {
		t.Fatalf("discovered %+v, want %s in chat for 3h", regs, ha.ID())
	}
	if len(regs[0].Peer.Addrs) == 0 {
		t.Fatal("discovered a peer without addresses")
	}
	for _, addr := range regs[0].Peer.Addrs {
		if strings.Contains(addr.String(), "/p2p/") {
			t.Fatalf("advertised address %s carries a /p2p/ suffix", addr)
		}
	}
	if again, _, err := b.DiscoverAt(ctx, point.ID(), "chat", 0, cookie); err != nil || len(again) != 0 {
		t.Fatalf("with the cookie: %v %v, want nothing new", again, err)
	}
	if err := a.UnregisterAt(ctx, point.ID(), "chat"); err != nil {
		t.Fatal(err)
	}
	if regs, _, err := b.DiscoverAt(ctx, point.ID(), "chat", 0, nil); err != nil || len(regs) != 0 {
		t.Fatalf("after unregister: %v %v, want none", regs, err)
	}
}

func TestPointRefusalCarriesStatus(t *testing.T) {
	checkLeaks(t)
	point := newPoint(t)
	c, _ := newClient(t, client.WithPoints(info(point)), client.WithTTLPolicy(rendezvous.TTLPolicy{Min: time.Second, Max: 100 * time.Hour, Default: time.Hour}))
	ctx := ctxFor(t, 30*time.Second)
	_, err := c.RegisterAt(ctx, point.ID(), "ns", 90*time.Hour)
	var rerr *rendezvous.Error
	if !errors.As(err, &rerr) || rerr.Status != rendezvous.StatusInvalidTTL || rerr.Text == "" {
		t.Fatalf("got %v, want E_INVALID_TTL from the point with its text", err)
	}
	// The same through Register: the refusal is that point's result.
	results, err := c.Register(ctx, "ns", 90*time.Hour)
	if !errors.Is(err, client.ErrNoPointReached) || len(results) != 1 || rendezvous.StatusOf(results[0].Err) != rendezvous.StatusInvalidTTL {
		t.Fatalf("Register: %v %+v, want the point's E_INVALID_TTL", err, results)
	}
}

// TestLocalErrorsBeforeIO: what the client can refuse, it refuses without
// sending anything.
func TestLocalErrorsBeforeIO(t *testing.T) {
	checkLeaks(t)
	sp := newScriptedPoint(t, func(int, *pb.Message) *pb.Message { return nil })
	c, _ := newClient(t, client.WithPoints(info(sp)), client.WithTTLPolicy(rendezvous.DefaultTTLPolicy()))
	ctx := ctxFor(t, 30*time.Second)
	long := strings.Repeat("x", 256)
	nobody := sp.ID()

	for name, err := range map[string]error{
		"RegisterAt long namespace": func() error { _, err := c.RegisterAt(ctx, nobody, long, 0); return err }(),
		"Register long namespace":   func() error { _, err := c.Register(ctx, long, 0); return err }(),
		"Register empty namespace":  func() error { _, err := c.Register(ctx, "", 0); return err }(),
		"Unregister long namespace": func() error { _, err := c.Unregister(ctx, long); return err }(),
		"Discover long namespace":   func() error { _, _, err := c.Discover(ctx, long, 0); return err }(),
	} {
		if rendezvous.StatusOf(err) != rendezvous.StatusInvalidNamespace {
			t.Errorf("%s: %v, want E_INVALID_NAMESPACE", name, err)
		}
	}
	for name, err := range map[string]error{
		"RegisterAt below the minimum": func() error { _, err := c.RegisterAt(ctx, nobody, "ns", time.Minute); return err }(),
		"Register below the minimum":   func() error { _, err := c.Register(ctx, "ns", time.Minute); return err }(),
		"Register above the maximum":   func() error { _, err := c.Register(ctx, "ns", 100*time.Hour); return err }(),
		"Register not whole seconds":   func() error { _, err := c.Register(ctx, "ns", 2*time.Hour+time.Millisecond); return err }(),
		"Advertise below the minimum":  func() error { _, err := c.Advertise(ctx, "ns", discovery.TTL(time.Minute)); return err }(),
	} {
		if rendezvous.StatusOf(err) != rendezvous.StatusInvalidTTL {
			t.Errorf("%s: %v, want E_INVALID_TTL", name, err)
		}
	}
	for name, err := range map[string]error{
		"DiscoverAt negative limit": func() error { _, _, err := c.DiscoverAt(ctx, nobody, "ns", -1, nil); return err }(),
		"Discover negative limit":   func() error { _, _, err := c.Discover(ctx, "ns", -1); return err }(),
		"FindPeers negative limit":  func() error { _, err := c.FindPeers(ctx, "ns", discovery.Limit(-1)); return err }(),
	} {
		if err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if n := sp.requests(); n != 0 {
		t.Fatalf("the point got %d requests, want none", n)
	}

	noPoints, _ := newClient(t)
	if _, err := noPoints.Register(ctx, "ns", 0); !errors.Is(err, client.ErrNoPoints) {
		t.Fatalf("Register without points: %v, want ErrNoPoints", err)
	}
	if c, err := client.New(newHost(t), client.WithPoints(peer.AddrInfo{})); err == nil {
		_ = c.Close()
		t.Fatal("a point without an ID was accepted")
	}
}
