package client_test

import (
	"context"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/client"
)

func collect(t *testing.T, ch <-chan peer.AddrInfo) []peer.AddrInfo {
	t.Helper()
	var out []peer.AddrInfo
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ai, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, ai)
		case <-timeout:
			t.Fatal("the channel of FindPeers was not closed")
		}
	}
}

func TestFindPeersHonoursLimit(t *testing.T) {
	checkLeaks(t)
	point := newPoint(t)
	ctx := ctxFor(t, 30*time.Second)
	for range 4 {
		c, _ := newClient(t, client.WithPoints(info(point)))
		if ttl, err := c.Advertise(ctx, "find", discovery.TTL(time.Hour)); err != nil || ttl != time.Hour {
			t.Fatalf("Advertise: %v %v, want 1h", ttl, err)
		}
	}
	finder, hf := newClient(t, client.WithPoints(info(point)))
	if _, err := finder.Advertise(ctx, "find"); err != nil {
		t.Fatal(err)
	}

	ch, err := finder.FindPeers(ctx, "find", discovery.Limit(2))
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ch); len(got) != 2 {
		t.Fatalf("found %d peers with limit 2", len(got))
	}
	ch, err = finder.FindPeers(ctx, "find")
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, ch)
	if len(got) != 4 {
		t.Fatalf("found %d peers without limit, want the 4 others", len(got))
	}
	for _, ai := range got {
		if ai.ID == hf.ID() || len(ai.Addrs) == 0 {
			t.Fatalf("found %v: ourselves, or no address", ai)
		}
	}
}

// TestPubSubDiscoversThroughPoint: two pubsub nodes that know only the
// point find each other through the client and exchange a message.
func TestPubSubDiscoversThroughPoint(t *testing.T) {
	checkLeaks(t)
	point := newPoint(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)

	topics := make([]*pubsub.Topic, 2)
	subs := make([]*pubsub.Subscription, 2)
	for i := range 2 {
		c, h := newClient(t, client.WithPoints(info(point)))
		ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithDiscovery(c))
		if err != nil {
			t.Fatal(err)
		}
		if topics[i], err = ps.Join("rendezvous-test"); err != nil {
			t.Fatal(err)
		}
		if subs[i], err = topics[i].Subscribe(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { subs[i].Cancel(); _ = topics[i].Close() })
	}

	if err := topics[0].Publish(ctx, []byte("hello"), pubsub.WithReadiness(pubsub.MinTopicSize(1))); err != nil {
		t.Fatalf("publishing: %v", err)
	}
	msg, err := subs[1].Next(ctx)
	if err != nil {
		t.Fatalf("receiving: %v", err)
	}
	if string(msg.Data) != "hello" {
		t.Fatalf("received %q", msg.Data)
	}
}
