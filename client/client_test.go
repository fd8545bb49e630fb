package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

func newHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func newPoint(t testing.TB) host.Host {
	t.Helper()
	h := newHost(t)
	st := memory.New()
	s, err := server.New(h, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(); _ = st.Close() })
	return h
}

func connectedClient(t testing.TB, point host.Host, opts ...client.Option) (*client.Client, host.Host) {
	t.Helper()
	h := newHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: point.ID(), Addrs: point.Addrs()}); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c, h
}

func TestRegisterDiscoverUnregisterAtOnePoint(t *testing.T) {
	point := newPoint(t)
	a, ha := connectedClient(t, point)
	b, _ := connectedClient(t, point)
	ctx := context.Background()

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
	point := newPoint(t)
	c, _ := connectedClient(t, point, client.WithTTLPolicy(rendezvous.TTLPolicy{Min: time.Second, Max: 100 * time.Hour, Default: time.Hour}))
	_, err := c.RegisterAt(context.Background(), point.ID(), "ns", 90*time.Hour)
	var rerr *rendezvous.Error
	if !errors.As(err, &rerr) || rerr.Status != rendezvous.StatusInvalidTTL || rerr.Text == "" {
		t.Fatalf("got %v, want E_INVALID_TTL from the point with its text", err)
	}
}

func TestLocalErrorsBeforeIO(t *testing.T) {
	h := newHost(t)
	c, err := client.New(h)
	if err != nil {
		t.Fatal(err)
	}
	nobody := peer.ID("not a peer")
	ctx := context.Background()
	if _, err := c.RegisterAt(ctx, nobody, strings.Repeat("x", 256), 0); rendezvous.StatusOf(err) != rendezvous.StatusInvalidNamespace {
		t.Fatalf("long namespace: %v", err)
	}
	if _, err := c.RegisterAt(ctx, nobody, "ns", time.Minute); rendezvous.StatusOf(err) != rendezvous.StatusInvalidTTL {
		t.Fatalf("short ttl: %v", err)
	}
	if _, _, err := c.DiscoverAt(ctx, nobody, "ns", -1, nil); err == nil {
		t.Fatal("negative limit accepted")
	}
}
