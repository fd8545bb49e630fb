package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/rendezvous-p2p/rendezvous/client"
)

// phase is a part of the run.
type phase int32

const (
	before phase = iota // legitimate traffic only
	during              // abuse and legitimate traffic
	after               // legitimate traffic, the abuse stopped
	nPhases
)

func (p phase) String() string { return [...]string{"BEFORE", "DURING", "AFTER"}[p] }

// clock is the phase the run is in.
type clock struct{ cur atomic.Int32 }

func (c *clock) now() phase     { return phase(c.cur.Load()) }
func (c *clock) set(p phase)    { c.cur.Store(int32(p)) }
func (c *clock) String() string { return c.now().String() }

// legitNamespace is where the legitimate peers register and discover.
const legitNamespace = "soak-legit"

// latencies are the legitimate peers' requests, by the phase each started
// in and by type: every request's time, failed ones included, and the
// failures.
type latencies struct {
	mu     sync.Mutex
	conns  [nPhases]int // connections the legitimate peers opened to the point
	times  [nPhases]map[string][]time.Duration
	failed [nPhases]map[string]int
	first  [nPhases]map[string]string // the first failure of each type
}

func newLatencies() *latencies {
	l := &latencies{}
	for p := range nPhases {
		l.times[p] = make(map[string][]time.Duration)
		l.failed[p] = make(map[string]int)
		l.first[p] = make(map[string]string)
	}
	return l
}

func (l *latencies) add(p phase, typ string, d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.times[p][typ] = append(l.times[p][typ], d)
	if err != nil {
		l.failed[p][typ]++
		if _, ok := l.first[p][typ]; !ok {
			l.first[p][typ] = fmt.Sprintf("%s: %v", time.Now().UTC().Format("15:04:05"), err)
		}
	}
}

// summary says, for phase p and request type typ, how many requests there
// were, their p50, p99 and max, and how many failed.
func (l *latencies) summary(p phase, typ string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ds := slices.Clone(l.times[p][typ])
	if len(ds) == 0 {
		return fmt.Sprintf("%s: none", typ)
	}
	slices.Sort(ds)
	s := fmt.Sprintf("%s: %d, p50 %s, p99 %s, max %s; %d failed", typ, len(ds),
		ms(quantile(ds, 0.50)), ms(quantile(ds, 0.99)), ms(ds[len(ds)-1]), l.failed[p][typ])
	if f, ok := l.first[p][typ]; ok {
		s += " (first at " + f + ")"
	}
	return s
}

func (l *latencies) connected(p phase) {
	l.mu.Lock()
	l.conns[p]++
	l.mu.Unlock()
}

func (l *latencies) connections(p phase) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[p]
}

func (l *latencies) failures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for p := range nPhases {
		for _, f := range l.failed[p] {
			n += f
		}
	}
	return n
}

// quantile is the q-quantile of sorted ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

// legitPeer is a legitimate client: its own host, from its own address,
// and our client library.
type legitPeer struct {
	host   host.Host
	client *client.Client
	ip     string
}

// startLegit connects n legitimate peers to the point, the i-th from
// 127.30.0.(i+1), and counts in lat each connection they open to it.
func startLegit(ctx context.Context, point *peer.AddrInfo, n int, clk *clock, lat *latencies) ([]*legitPeer, error) {
	var peers []*legitPeer
	for i := range n {
		ip := sourceIP(30, i).String()
		h, err := libp2p.New(
			libp2p.ListenAddrStrings("/ip4/"+ip+"/tcp/0"),
			libp2p.ResourceManager(&network.NullResourceManager{}),
		)
		if err != nil {
			return peers, err
		}
		lp := &legitPeer{host: h, ip: ip}
		peers = append(peers, lp)
		h.Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
			if c.RemotePeer() == point.ID {
				lat.connected(clk.now())
			}
		}})
		h.Peerstore().AddAddrs(point.ID, point.Addrs, peerstore.PermanentAddrTTL)
		if err := h.Connect(ctx, *point); err != nil {
			return peers, fmt.Errorf("legitimate peer %s: connecting: %w", ip, err)
		}
		for _, c := range h.Network().ConnsToPeer(point.ID) {
			if got, _ := manet.ToIP(c.LocalMultiaddr()); got.String() != ip {
				return peers, fmt.Errorf("legitimate peer connected from %s, want %s", c.LocalMultiaddr(), ip)
			}
		}
		lp.client, err = client.New(h, client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			return peers, err
		}
	}
	return peers, nil
}

func (lp *legitPeer) close() {
	if lp.client != nil {
		_ = lp.client.Close()
	}
	_ = lp.host.Close()
}

// loop refreshes lp's registration and discovers the namespace, once each
// interval (starting after offset) until ctx is done, recording each
// request in lat under the phase it started in. A DISCOVER that misses a
// peer known to be registered counts as failed. registered counts the
// peers registered at least once; first is lp's own mark in it.
func (lp *legitPeer) loop(ctx context.Context, point peer.ID, interval, offset time.Duration, clk *clock, lat *latencies, registered *atomic.Int64) {
	if !sleep(ctx, offset) {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var first sync.Once
	for range math.MaxInt32 {
		p := clk.now()
		start := time.Now()
		_, err := lp.client.RegisterAt(ctx, point, legitNamespace, 0)
		if ctx.Err() != nil {
			return
		}
		lat.add(p, "REGISTER", time.Since(start), err)
		if err == nil {
			first.Do(func() { registered.Add(1) })
		}

		p = clk.now()
		want := int(registered.Load())
		start = time.Now()
		regs, _, err := lp.client.DiscoverAt(ctx, point, legitNamespace, 100, nil)
		if ctx.Err() != nil {
			return
		}
		if err == nil && len(regs) < want {
			err = fmt.Errorf("found %d of the %d legitimate peers registered", len(regs), want)
		}
		lat.add(p, "DISCOVER", time.Since(start), err)

		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
