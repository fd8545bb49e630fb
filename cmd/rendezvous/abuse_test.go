package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio"
	manet "github.com/multiformats/go-multiaddr/net"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// These tests run serve's point (startPoint, as runPoint does) with
// limit-loopback on, and clients on distinct loopback addresses: a host
// listening on 127.a.b.c dials out from it. 127.1.0.0/24 is the abusive
// subnet (127.1.0.1 and 127.1.0.2 in it); 127.2.0.1 is another source.
const (
	abuserIP1, abuserIP2, honestIP = "127.1.0.1", "127.1.0.2", "127.2.0.1"
)

// startLimitedPoint starts a point with the machine's limits changed by set.
func startLimitedPoint(t *testing.T, set func(*Limits)) (*point, peer.AddrInfo) {
	t.Helper()
	var cfg serveConfig
	cfg.flags(flag.NewFlagSet("serve", flag.ContinueOnError))
	cfg.store = "memory"
	cfg.dataDir = t.TempDir()
	cfg.listen.values = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.limits.LimitLoopback = true
	set(&cfg.limits)
	p, err := startPoint(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	return p, peer.AddrInfo{ID: p.host.ID(), Addrs: p.host.Addrs()}
}

// sourceHost is a client host that dials out from ip. Its own resource
// manager limits nothing, so that it can open what an abuser opens.
func sourceHost(t *testing.T, ip string) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/"+ip+"/tcp/0"),
		libp2p.ResourceManager(&network.NullResourceManager{}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// connect connects h to the point and checks the point sees it at ip.
func connect(ctx context.Context, t *testing.T, h host.Host, pt peer.AddrInfo, ip string) error {
	t.Helper()
	if err := h.Connect(ctx, pt); err != nil {
		return err
	}
	for _, c := range h.Network().ConnsToPeer(pt.ID) {
		if got, _ := manet.ToIP(c.LocalMultiaddr()); got.String() != ip {
			t.Fatalf("client connected from %s, want %s", c.LocalMultiaddr(), ip)
		}
	}
	return nil
}

// honestLoop registers and discovers from a peer of honestIP, n times; every
// attempt must succeed.
func honestLoop(ctx context.Context, t *testing.T, pt peer.AddrInfo, n int) {
	t.Helper()
	h := sourceHost(t, honestIP)
	if err := connect(ctx, t, h, pt, honestIP); err != nil {
		t.Fatalf("honest peer: connecting: %v", err)
	}
	c, err := client.New(h)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := c.RegisterAt(ctx, pt.ID, "honest", 0); err != nil {
			t.Fatalf("honest peer: register %d of %d: %v", i+1, n, err)
		}
		regs, _, err := c.DiscoverAt(ctx, pt.ID, "honest", 10, nil)
		if err != nil || len(regs) != 1 {
			t.Fatalf("honest peer: discover %d of %d: %d registrations, %v", i+1, n, len(regs), err)
		}
	}
}

// discoverOn sends a DISCOVER on s and reads the answer: what a client
// polling on one stream does before it waits for its next poll.
func discoverOn(s network.Stream) error {
	req, _ := proto.Marshal(&pb.Message{
		Type:     pb.Message_DISCOVER.Enum(),
		Discover: &pb.Message_Discover{Ns: proto.String("idle"), Limit: proto.Uint64(1)},
	})
	if err := msgio.NewVarintWriter(s).WriteMsg(req); err != nil {
		return err
	}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := msgio.NewVarintReaderSize(s, 1<<16).ReadMsg()
	if err != nil {
		return err
	}
	var resp pb.Message
	if err := proto.Unmarshal(b, &resp); err != nil {
		return err
	}
	if resp.GetType() != pb.Message_DISCOVER_RESPONSE {
		return fmt.Errorf("answered %s", resp.GetType())
	}
	_ = s.SetReadDeadline(time.Time{})
	return nil
}

// refusals reads libp2p_rendezvous_source_refusals_total{limit} of p.
func refusals(t *testing.T, p *point, limit string) int {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "libp2p_rendezvous_source_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "limit" && lp.GetValue() == limit {
					return int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}

// eventually polls cond until it holds or 10 s have passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func transientStreams(p *point) int {
	var n int
	_ = p.host.Network().ResourceManager().ViewTransient(func(s network.ResourceScope) error {
		n = s.Stat().NumStreamsInbound
		return nil
	})
	return n
}

func serviceStreams(p *point) int {
	var n int
	_ = p.host.Network().ResourceManager().ViewService(rendezvous.ServiceName, func(s network.ServiceScope) error {
		n = s.Stat().NumStreamsInbound
		return nil
	})
	return n
}

// connsFrom counts the point's connections from the addresses in prefix.
func connsFrom(p *point, prefix string) int {
	pfx := netip.MustParsePrefix(prefix)
	n := 0
	for _, c := range p.host.Network().Conns() {
		ip, err := manet.ToIP(c.RemoteMultiaddr())
		if err != nil {
			continue
		}
		if a, ok := netip.AddrFromSlice(ip); ok && pfx.Contains(a.Unmap()) {
			n++
		}
	}
	return n
}

func TestIdleStreamsOfOneSourceTakeOnlyItsShare(t *testing.T) {
	// An abusive subnet opens rendezvous streams, asks one DISCOVER on each
	// (so each is held by the point, waiting for the next), and keeps them.
	p, pt := startLimitedPoint(t, func(l *Limits) {
		l.Streams, l.StreamsPerPeer, l.StreamsPerIP, l.StreamsPerSubnet = 16, 4, 6, 10
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	held := map[string]int{}
	var abusers []host.Host
	for _, ip := range []string{abuserIP1, abuserIP2} {
		for range 3 { // 3 peers of 5 streams each, from each address
			h := sourceHost(t, ip)
			abusers = append(abusers, h)
			if err := connect(ctx, t, h, pt, ip); err != nil {
				t.Fatal(err)
			}
			for range 5 {
				s, err := h.NewStream(ctx, pt.ID, rendezvous.ProtocolID)
				if err != nil {
					t.Fatal(err)
				}
				if discoverOn(s) == nil {
					held[ip]++
				}
			}
		}
	}
	// Per peer 4, per address 6, per /24 10: the first address gets 6, the
	// second what is left of the subnet's 10.
	if held[abuserIP1] != 6 || held[abuserIP2] != 4 {
		t.Fatalf("the abusive subnet holds %v streams, want 6 from %s and 4 from %s", held, abuserIP1, abuserIP2)
	}
	eventually(t, "the point holds the 10 streams", func() bool { return serviceStreams(p) == 10 })

	// While the abusers keep trying for more, another source is served.
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			select {
			case <-done:
				return
			default:
			}
			s, err := abusers[i%len(abusers)].NewStream(ctx, pt.ID, rendezvous.ProtocolID)
			if err == nil && discoverOn(s) == nil {
				t.Errorf("an abuser got stream %d beyond its share", i)
				return
			}
		}
	})
	honestLoop(ctx, t, pt, 20)
	close(done)
	wg.Wait()
	if n := refusals(t, p, refusedStreamsPerIP) + refusals(t, p, refusedStreamsPerSubnet); n == 0 {
		t.Error("no refusal counted in libp2p_rendezvous_source_refusals_total")
	}
	eventually(t, "the abusers' 10 streams still held once the honest peer is done", func() bool { return serviceStreams(p) == 10 })
}

func TestUnnegotiatedStreamsOfOneSourceTakeOnlyItsShare(t *testing.T) {
	const timeout = 3 * time.Second
	p, pt := startLimitedPoint(t, func(l *Limits) {
		l.Negotiating, l.NegotiatingPerPeer, l.NegotiatingPerIP, l.NegotiatingPerSubnet = 16, 4, 6, 10
		l.NegotiationTimeout = timeout
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var abusers []host.Host
	for _, ip := range []string{abuserIP1, abuserIP2} {
		for range 3 {
			h := sourceHost(t, ip)
			if err := connect(ctx, t, h, pt, ip); err != nil {
				t.Fatal(err)
			}
			abusers = append(abusers, h)
		}
	}
	// Identify's streams are done before the abusers start.
	eventually(t, "no stream negotiating", func() bool { return transientStreams(p) == 0 })

	// Each peer opens 5 streams and never says which protocol it wants.
	start := time.Now()
	var streams []network.Stream
	for _, h := range abusers {
		for range 5 {
			s, err := h.Network().NewStream(network.WithNoDial(ctx, "abuse"), pt.ID)
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, s)
		}
	}
	// 30 opened: 10 held (6 from the first address, 4 from the second:
	// its subnet's share), 20 refused.
	refused := func() int {
		return refusals(t, p, refusedNegotiatingPerPeer) + refusals(t, p, refusedNegotiatingPerIP) + refusals(t, p, refusedNegotiatingPerSubnet)
	}
	eventually(t, "every stream held or refused", func() bool { return transientStreams(p)+refused() == len(streams) })
	if n := transientStreams(p); n != 10 {
		t.Fatalf("the abusive subnet holds %d negotiating streams, want its share of 10", n)
	}

	honestLoop(ctx, t, pt, 20)

	// The held streams are reset once the negotiation timeout is up, well
	// before go-libp2p's 10 s.
	eventually(t, "the negotiating streams reset", func() bool { return transientStreams(p) == 0 })
	if took := time.Since(start); took > 9*time.Second {
		t.Errorf("negotiating streams were reset after %v, want about %v", took, timeout)
	}
	buf := make([]byte, 1)
	for _, s := range streams {
		_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := s.Read(buf); err == nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "deadline") {
			t.Fatalf("an unnegotiated stream is still open: %v", err)
		}
	}
}

func TestIdleConnectionsOfOneSourceTakeOnlyItsShare(t *testing.T) {
	const idle = 2 * time.Second
	p, pt := startLimitedPoint(t, func(l *Limits) {
		l.Conns, l.ConnsPerIP, l.ConnsPerSubnet = 8, 3, 5
		l.IdleConnTimeout = idle
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	connected := map[string]int{}
	for _, ip := range []string{abuserIP1, abuserIP2} {
		for range 4 {
			if connect(ctx, t, sourceHost(t, ip), pt, ip) == nil {
				connected[ip]++
			}
		}
	}
	if connected[abuserIP1] != 3 || connected[abuserIP2] != 2 {
		t.Fatalf("the abusive subnet got %v connections, want 3 from %s and 2 from %s (per address 3, per /24 5)", connected, abuserIP1, abuserIP2)
	}
	if n := refusals(t, p, refusedConnsPerSource); n != 3 {
		t.Errorf("%d connections refused in libp2p_rendezvous_source_refusals_total, want 3", n)
	}
	honestLoop(ctx, t, pt, 20)

	// Connections that carry no stream are closed.
	start := time.Now()
	eventually(t, "idle connections closed", func() bool { return connsFrom(p, "127.1.0.0/24") == 0 })
	if took := time.Since(start); took > idle*5/4+time.Second {
		t.Errorf("idle connections closed after %v, want at most %v", took, idle*5/4)
	}
}

func TestConnectionRateIsPerSourceAndConfigured(t *testing.T) {
	p, pt := startLimitedPoint(t, func(l *Limits) {
		l.ConnBurstPerIP, l.ConnRatePerIP = 3, 0.01 // no refill within the test
		l.ConnBurstPerSubnet, l.ConnRatePerSubnet = 5, 0.01
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Each attempt is a new peer that disconnects at once: only the rate
	// can refuse it.
	try := func(ip string, n int) (ok int) {
		for range n {
			h := sourceHost(t, ip)
			if connect(ctx, t, h, pt, ip) == nil {
				ok++
			}
			_ = h.Close()
		}
		return ok
	}
	if got := try(abuserIP1, 5); got != 3 {
		t.Errorf("%s connected %d times of 5, want its burst of 3", abuserIP1, got)
	}
	if got := try(abuserIP2, 5); got != 2 {
		t.Errorf("%s connected %d times of 5, want the 2 left of its /24's burst of 5", abuserIP2, got)
	}
	if got := try(honestIP, 3); got != 3 {
		t.Errorf("%s, another /24, connected %d times of 3, want 3", honestIP, got)
	}
	if n := refusals(t, p, refusedConnRate); n != 5 {
		t.Errorf("%d connections refused by rate in libp2p_rendezvous_source_refusals_total, want 5", n)
	}
}

func TestLoopbackExemptUnlessLimited(t *testing.T) {
	p, pt := startLimitedPoint(t, func(l *Limits) {
		l.LimitLoopback = false
		l.ConnsPerIP, l.ConnsPerSubnet, l.ConnBurstPerIP, l.ConnBurstPerSubnet = 1, 1, 1, 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 3 {
		if err := connect(ctx, t, sourceHost(t, abuserIP1), pt, abuserIP1); err != nil {
			t.Fatalf("connection %d from loopback, exempt: %v", i+1, err)
		}
	}
	if n := connsFrom(p, "127.1.0.0/24"); n != 3 {
		t.Fatalf("%d connections from loopback, want 3", n)
	}
}

// A connection that carries a short stream now and then is busy, not idle,
// even if the sweep never catches it holding one: it is not closed between
// requests.
func TestBusyConnectionIsNotClosedAsIdle(t *testing.T) {
	const idle = time.Second
	_, pt := startLimitedPoint(t, func(l *Limits) { l.IdleConnTimeout = idle })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := sourceHost(t, honestIP)
	var connected atomic.Int32
	h.Network().Notify(&network.NotifyBundle{ConnectedF: func(network.Network, network.Conn) { connected.Add(1) }})
	if err := connect(ctx, t, h, pt, honestIP); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(h)
	if err != nil {
		t.Fatal(err)
	}
	pace := time.NewTicker(idle / 5)
	defer pace.Stop()
	for i := range 20 { // four idle timeouts
		if _, _, err := c.DiscoverAt(ctx, pt.ID, "busy", 1, nil); err != nil {
			t.Fatalf("discover %d: %v", i, err)
		}
		<-pace.C
	}
	if n := connected.Load(); n != 1 {
		t.Fatalf("the client connected %d times, want once: the point closed a busy connection", n)
	}
}
