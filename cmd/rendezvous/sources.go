package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	xrate "github.com/libp2p/go-libp2p/x/rate"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-p2p/rendezvous"
)

// Reasons of libp2p_rendezvous_source_refusals_total: the limits of Limits
// that go-libp2p's resource manager does not report in
// libp2p_rcmgr_blocked_resources.
const (
	refusedConnRate             = "conn_rate"
	refusedConnsPerSource       = "conns_per_source"
	refusedNegotiatingPerPeer   = "negotiating_per_peer"
	refusedNegotiatingPerIP     = "negotiating_per_ip"
	refusedNegotiatingPerSubnet = "negotiating_per_subnet"
	refusedStreamsPerIP         = "streams_per_ip"
	refusedStreamsPerSubnet     = "streams_per_subnet"
)

// newResourceManager returns the resource manager of serve's host:
// go-libp2p's, with l's limits in total and per peer, its per-subnet
// connection limits and connection rates set to l's, wrapped in a
// sourceLimiter for the per-source stream limits. Refusals that go-libp2p
// does not count are counted in reg, if not nil. What go-libp2p reports of
// its own is set by metrics.
func newResourceManager(l Limits, metrics resourceMetrics, reg prometheus.Registerer) (network.ResourceManager, error) {
	var exemptV4, exemptV6 []rcmgr.NetworkPrefixLimit // nil: go-libp2p's loopback exemption
	exemptRate := []xrate.PrefixLimit{
		{Prefix: netip.MustParsePrefix("127.0.0.0/8")},
		{Prefix: netip.MustParsePrefix("::1/128")},
	}
	if l.LimitLoopback {
		exemptV4, exemptV6, exemptRate = []rcmgr.NetworkPrefixLimit{}, []rcmgr.NetworkPrefixLimit{}, nil
	}
	connRate := &xrate.Limiter{
		NetworkPrefixLimits: exemptRate,
		SubnetRateLimiter: xrate.SubnetLimiter{
			IPv4SubnetLimits: []xrate.SubnetLimit{
				{PrefixLength: 32, Limit: xrate.Limit{RPS: l.ConnRatePerIP, Burst: l.ConnBurstPerIP}},
				{PrefixLength: 24, Limit: xrate.Limit{RPS: l.ConnRatePerSubnet, Burst: l.ConnBurstPerSubnet}},
			},
			IPv6SubnetLimits: []xrate.SubnetLimit{
				{PrefixLength: 64, Limit: xrate.Limit{RPS: l.ConnRatePerIP, Burst: l.ConnBurstPerIP}},
				{PrefixLength: 48, Limit: xrate.Limit{RPS: l.ConnRatePerSubnet, Burst: l.ConnBurstPerSubnet}},
			},
			GracePeriod: time.Minute,
		},
	}
	limiter := rcmgr.NewFixedLimiter(l.resourceLimits())
	opts := append(resourceMetricsOptions(metrics, limiter),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: l.ConnsPerIP}, {PrefixLength: 24, ConnCount: l.ConnsPerSubnet}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 64, ConnCount: l.ConnsPerIP}, {PrefixLength: 48, ConnCount: l.ConnsPerSubnet}},
		),
		rcmgr.WithNetworkPrefixLimit(exemptV4, exemptV6),
		rcmgr.WithConnRateLimiters(connRate),
	)
	inner, err := rcmgr.NewResourceManager(limiter, opts...)
	if err != nil {
		return nil, err
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "libp2p",
		Subsystem: "rendezvous",
		Name:      "source_refusals_total",
		Help:      "Connections and streams refused by a per-source limit or a connection rate, by limit.",
	}, []string{"limit"})
	if reg != nil {
		if err := reg.Register(refused); err != nil {
			_ = inner.Close()
			return nil, err
		}
	}
	return &sourceLimiter{
		ResourceManager: inner,
		l:               l,
		refused:         refused,
		peerIPs:         make(map[peer.ID][]netip.Addr),
		negotiating:     make(map[any]int),
		streams:         make(map[netip.Prefix]int),
	}, nil
}

// sourceLimiter is a network.ResourceManager that bounds, per source (an
// IPv4 address or IPv6 /64, and the IPv4 /24 or IPv6 /48 around it), the
// inbound streams still negotiating their protocol and the rendezvous
// streams, which go-libp2p bounds only per peer and in total: peer IDs cost
// nothing, addresses do. A peer's source is the address of its first open
// connection.
type sourceLimiter struct {
	network.ResourceManager
	l       Limits
	refused *prometheus.CounterVec

	mu          sync.Mutex
	peerIPs     map[peer.ID][]netip.Addr // addresses of each peer's connections
	negotiating map[any]int              // by peer.ID and netip.Prefix
	streams     map[netip.Prefix]int     // rendezvous streams by source
}

// OpenConnection counts the refusals of go-libp2p's per-source connection
// limits and rates, which its metrics leave out.
func (sl *sourceLimiter) OpenConnection(dir network.Direction, usefd bool, endpoint ma.Multiaddr) (network.ConnManagementScope, error) {
	scope, err := sl.ResourceManager.OpenConnection(dir, usefd, endpoint)
	if err != nil {
		// go-libp2p exports no error values for these: its texts are all
		// there is to tell them apart.
		switch msg := err.Error(); {
		case strings.Contains(msg, "rate limit exceeded"):
			sl.refused.WithLabelValues(refusedConnRate).Inc()
		case strings.Contains(msg, "per ip limit exceeded"):
			sl.refused.WithLabelValues(refusedConnsPerSource).Inc()
		}
		return nil, err
	}
	ip, ok := sl.source(endpoint)
	if !ok {
		return scope, nil
	}
	return &sourceConnScope{ConnManagementScope: scope, sl: sl, ip: ip}, nil
}

// OpenStream refuses an inbound stream beyond its peer's or its source's
// share of negotiating streams.
func (sl *sourceLimiter) OpenStream(p peer.ID, dir network.Direction) (network.StreamManagementScope, error) {
	if dir != network.DirInbound {
		return sl.ResourceManager.OpenStream(p, dir)
	}
	ip, hasIP := sl.sourceOf(p)
	if err := sl.acquireNegotiating(p, ip, hasIP); err != nil {
		return nil, err
	}
	scope, err := sl.ResourceManager.OpenStream(p, dir)
	if err != nil {
		sl.releaseNegotiating(p, ip, hasIP)
		return nil, err
	}
	return &sourceStreamScope{StreamManagementScope: scope, sl: sl, peer: p, ip: ip, hasIP: hasIP, negotiating: true}, nil
}

// source is the address that endpoint's per-source limits apply to; none
// for a loopback address unless Limits.LimitLoopback.
func (sl *sourceLimiter) source(endpoint ma.Multiaddr) (netip.Addr, bool) {
	nip, err := manet.ToIP(endpoint)
	if err != nil {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(nip)
	if !ok {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	if ip.IsLoopback() && !sl.l.LimitLoopback {
		return netip.Addr{}, false
	}
	return ip, true
}

// sourceKeys are the per-IP and per-subnet keys of ip.
func sourceKeys(ip netip.Addr) (perIP, perSubnet netip.Prefix) {
	if ip.Is4() {
		perIP, _ = ip.Prefix(32)
		perSubnet, _ = ip.Prefix(24)
	} else {
		perIP, _ = ip.Prefix(64)
		perSubnet, _ = ip.Prefix(48)
	}
	return perIP, perSubnet
}

func (sl *sourceLimiter) sourceOf(p peer.ID) (netip.Addr, bool) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if ips := sl.peerIPs[p]; len(ips) > 0 {
		return ips[0], true
	}
	return netip.Addr{}, false
}

func (sl *sourceLimiter) addPeerConn(p peer.ID, ip netip.Addr) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.peerIPs[p] = append(sl.peerIPs[p], ip)
}

func (sl *sourceLimiter) removePeerConn(p peer.ID, ip netip.Addr) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	ips := sl.peerIPs[p]
	for i, a := range ips {
		if a == ip {
			ips = append(ips[:i], ips[i+1:]...)
			break
		}
	}
	if len(ips) == 0 {
		delete(sl.peerIPs, p)
	} else {
		sl.peerIPs[p] = ips
	}
}

// errSourceLimit is a stream refused by a per-source or per-peer limit.
func errSourceLimit(what string) error {
	return fmt.Errorf("%w: %s", network.ErrResourceLimitExceeded, what)
}

func (sl *sourceLimiter) acquireNegotiating(p peer.ID, ip netip.Addr, hasIP bool) error {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.negotiating[p] >= sl.l.NegotiatingPerPeer {
		sl.refused.WithLabelValues(refusedNegotiatingPerPeer).Inc()
		return errSourceLimit("negotiating streams of the peer")
	}
	if hasIP {
		perIP, perSubnet := sourceKeys(ip)
		if sl.negotiating[perIP] >= sl.l.NegotiatingPerIP {
			sl.refused.WithLabelValues(refusedNegotiatingPerIP).Inc()
			return errSourceLimit("negotiating streams from " + perIP.String())
		}
		if sl.negotiating[perSubnet] >= sl.l.NegotiatingPerSubnet {
			sl.refused.WithLabelValues(refusedNegotiatingPerSubnet).Inc()
			return errSourceLimit("negotiating streams from " + perSubnet.String())
		}
		sl.negotiating[perIP]++
		sl.negotiating[perSubnet]++
	}
	sl.negotiating[p]++
	return nil
}

func (sl *sourceLimiter) releaseNegotiating(p peer.ID, ip netip.Addr, hasIP bool) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	decrement(sl.negotiating, any(p))
	if hasIP {
		perIP, perSubnet := sourceKeys(ip)
		decrement(sl.negotiating, any(perIP))
		decrement(sl.negotiating, any(perSubnet))
	}
}

func (sl *sourceLimiter) acquireStream(ip netip.Addr) error {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	perIP, perSubnet := sourceKeys(ip)
	if sl.streams[perIP] >= sl.l.StreamsPerIP {
		sl.refused.WithLabelValues(refusedStreamsPerIP).Inc()
		return errSourceLimit("rendezvous streams from " + perIP.String())
	}
	if sl.streams[perSubnet] >= sl.l.StreamsPerSubnet {
		sl.refused.WithLabelValues(refusedStreamsPerSubnet).Inc()
		return errSourceLimit("rendezvous streams from " + perSubnet.String())
	}
	sl.streams[perIP]++
	sl.streams[perSubnet]++
	return nil
}

func (sl *sourceLimiter) releaseStream(ip netip.Addr) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	perIP, perSubnet := sourceKeys(ip)
	decrement(sl.streams, perIP)
	decrement(sl.streams, perSubnet)
}

func decrement[K comparable](m map[K]int, k K) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

// sourceConnScope records the peer of a connection from a source.
type sourceConnScope struct {
	network.ConnManagementScope
	sl *sourceLimiter
	ip netip.Addr

	mu   sync.Mutex
	peer peer.ID
	done bool
}

func (c *sourceConnScope) SetPeer(p peer.ID) error {
	if err := c.ConnManagementScope.SetPeer(p); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done || c.peer != "" {
		return nil
	}
	c.peer = p
	c.sl.addPeerConn(p, c.ip)
	return nil
}

func (c *sourceConnScope) Done() {
	c.ConnManagementScope.Done()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	if c.peer != "" {
		c.sl.removePeerConn(c.peer, c.ip)
	}
}

// sourceStreamScope holds an inbound stream's share of its peer's and its
// source's negotiating streams until it agrees on a protocol, then, if it
// joins the rendezvous service, its share of its source's rendezvous
// streams until it is done.
type sourceStreamScope struct {
	network.StreamManagementScope
	sl    *sourceLimiter
	peer  peer.ID
	ip    netip.Addr
	hasIP bool

	mu          sync.Mutex
	negotiating bool // holds a negotiating slot
	serving     bool // holds a rendezvous stream slot
	done        bool
}

func (s *sourceStreamScope) SetProtocol(proto protocol.ID) error {
	if err := s.StreamManagementScope.SetProtocol(proto); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.negotiating {
		s.negotiating = false
		s.sl.releaseNegotiating(s.peer, s.ip, s.hasIP)
	}
	return nil
}

func (s *sourceStreamScope) SetService(svc string) error {
	if svc != rendezvous.ServiceName || !s.hasIP {
		return s.StreamManagementScope.SetService(svc)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || s.serving {
		return errors.New("stream scope already attached to a service")
	}
	if err := s.sl.acquireStream(s.ip); err != nil {
		return err
	}
	if err := s.StreamManagementScope.SetService(svc); err != nil {
		s.sl.releaseStream(s.ip)
		return err
	}
	s.serving = true
	return nil
}

func (s *sourceStreamScope) Done() {
	s.StreamManagementScope.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	if s.negotiating {
		s.sl.releaseNegotiating(s.peer, s.ip, s.hasIP)
	}
	if s.serving {
		s.sl.releaseStream(s.ip)
	}
}
