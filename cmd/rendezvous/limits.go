package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/pbnjay/memory"

	"github.com/rendezvous-p2p/rendezvous"
)

// Limits are what serve lets its peers hold: connections, rendezvous
// streams and streams still negotiating their protocol, each bounded in
// total and per source, a source being an IPv4 address or IPv6 /64 ("per
// IP") and the IPv4 /24 or IPv6 /48 around it ("per subnet"). DeriveLimits
// sizes them for a machine; every field is a serve setting.
type Limits struct {
	// Memory is what the resource manager lets the libp2p stack reserve.
	// Default a quarter of the machine's memory (or of its cgroup's limit).
	Memory int64

	// Conns bounds the inbound connections. Default: half of Memory at
	// ConnCost each, and no more than the file descriptors allow (all but
	// FDReserve of them).
	Conns int
	// ConnsPerIP bounds the connections from one IPv4 address or IPv6 /64.
	// Default Conns/128, at least 16 and at most 1024.
	ConnsPerIP int
	// ConnsPerSubnet bounds the connections from one IPv4 /24 or IPv6 /48.
	// Default 4 × ConnsPerIP, at most Conns.
	ConnsPerSubnet int
	// Handshakes bounds the inbound connections still in their security
	// handshake. Default Conns/4, at least 64.
	Handshakes int
	// ConnRatePerIP is how many new connections a second one IPv4 address
	// or IPv6 /64 may open once its burst is spent. Default ConnsPerIP/30,
	// refilling its whole share in 30 s.
	ConnRatePerIP float64
	// ConnBurstPerIP is how many connections one IPv4 address or IPv6 /64
	// may open at once. Default ConnsPerIP.
	ConnBurstPerIP int
	// ConnRatePerSubnet is ConnRatePerIP for an IPv4 /24 or IPv6 /48.
	// Default ConnsPerSubnet/30.
	ConnRatePerSubnet float64
	// ConnBurstPerSubnet is ConnBurstPerIP for an IPv4 /24 or IPv6 /48.
	// Default ConnsPerSubnet.
	ConnBurstPerSubnet int
	// IdleConnTimeout is how long an inbound connection may carry no stream
	// before it is closed. Default 1 min.
	IdleConnTimeout time.Duration

	// Streams bounds the inbound rendezvous streams, waiting ones included.
	// Default: half of Memory at StreamCost each.
	Streams int
	// StreamsPerPeer bounds one peer's rendezvous streams. Default 16.
	StreamsPerPeer int
	// StreamsPerIP bounds the rendezvous streams from one IPv4 address or
	// IPv6 /64. Default Streams/128, at least 64.
	StreamsPerIP int
	// StreamsPerSubnet bounds the rendezvous streams from one IPv4 /24 or
	// IPv6 /48. Default 4 × StreamsPerIP, at most Streams.
	StreamsPerSubnet int

	// Negotiating bounds the inbound streams of every protocol that have not
	// yet agreed on one (libp2p's transient scope). Default Streams/16, at
	// least 256.
	Negotiating int
	// NegotiatingPerPeer bounds one peer's negotiating streams. Default 8.
	NegotiatingPerPeer int
	// NegotiatingPerIP bounds the negotiating streams from one IPv4 address
	// or IPv6 /64. Default Negotiating/128, at least 16.
	NegotiatingPerIP int
	// NegotiatingPerSubnet bounds the negotiating streams from one IPv4 /24
	// or IPv6 /48. Default 4 × NegotiatingPerIP, at most Negotiating.
	NegotiatingPerSubnet int
	// NegotiationTimeout bounds the protocol negotiation of an inbound
	// stream; a stream that has not agreed on a protocol by then is reset.
	// Default 5 s.
	NegotiationTimeout time.Duration

	// LimitLoopback applies the per-source limits and connection rates, and
	// the point's registration quotas and request rates, to 127.0.0.0/8 and
	// ::1 too. go-libp2p exempts loopback from its per-IP connection limits
	// and rates, and so does serve, from all of them, unless told. Default
	// false.
	LimitLoopback bool
}

// What a peer costs the point, used to size Limits from the machine.
const (
	// ConnCost is the memory an idle connection holds (TCP, Noise and
	// yamux state, about 80 KB measured, and 4 goroutines), with headroom.
	ConnCost = 128 << 10
	// StreamCost is the memory a rendezvous stream waiting for its next
	// request holds (its handler's goroutine and the yamux stream, about
	// 8 KB measured), with headroom.
	StreamCost = 16 << 10
	// FDReserve is the file descriptors kept from connections for the
	// store, the listeners and the metrics endpoint (a quarter of the
	// limit when that is less).
	FDReserve = 256
)

// Defaults of Limits that do not depend on the machine.
const (
	DefaultStreamsPerPeer     = 16
	DefaultNegotiatingPerPeer = 8
	DefaultNegotiationTimeout = 5 * time.Second
	DefaultIdleConnTimeout    = time.Minute
)

// DeriveLimits sizes the limits for a machine with mem bytes of memory and
// a limit of fds open files.
func DeriveLimits(mem uint64, fds int) Limits {
	var l Limits
	l.Memory = int64(mem / 4)
	l.Conns = int(l.Memory / 2 / ConnCost)
	if byFD := fds - min(FDReserve, fds/4); byFD < l.Conns {
		l.Conns = byFD
	}
	l.Conns = max(l.Conns, 16)
	l.ConnsPerIP = clamp(l.Conns/128, 16, 1024)
	l.ConnsPerSubnet = min(4*l.ConnsPerIP, l.Conns)
	l.Handshakes = max(l.Conns/4, 64)
	l.ConnBurstPerIP = l.ConnsPerIP
	l.ConnRatePerIP = perSecond(l.ConnsPerIP, 30)
	l.ConnBurstPerSubnet = l.ConnsPerSubnet
	l.ConnRatePerSubnet = perSecond(l.ConnsPerSubnet, 30)
	l.IdleConnTimeout = DefaultIdleConnTimeout

	l.Streams = max(int(l.Memory/2/StreamCost), 256)
	l.StreamsPerPeer = DefaultStreamsPerPeer
	l.StreamsPerIP = max(l.Streams/128, 64)
	l.StreamsPerSubnet = min(4*l.StreamsPerIP, l.Streams)

	l.Negotiating = max(l.Streams/16, 256)
	l.NegotiatingPerPeer = DefaultNegotiatingPerPeer
	l.NegotiatingPerIP = max(l.Negotiating/128, 16)
	l.NegotiatingPerSubnet = min(4*l.NegotiatingPerIP, l.Negotiating)
	l.NegotiationTimeout = DefaultNegotiationTimeout
	return l
}

func clamp(v, lo, hi int) int { return min(max(v, lo), hi) }

// perSecond is n per seconds, rounded to a tenth and at least one tenth.
func perSecond(n, seconds int) float64 {
	return max(math.Round(float64(n)*10/float64(seconds)), 1) / 10
}

// MachineLimits are the limits derived from this machine: its memory (or
// its cgroup's memory limit, if lower) and this process's open-file limit.
func MachineLimits() Limits {
	return DeriveLimits(machineMemory(), fileLimit())
}

func machineMemory() uint64 {
	mem := memory.TotalMemory()
	// A container sees the host's memory; its cgroup's limit is what it has.
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (mem == 0 || n < mem) {
			mem = n
		}
	}
	if mem == 0 {
		mem = 1 << 30
	}
	return mem
}

func fileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<24 {
		return 1 << 16
	}
	return int(rl.Cur)
}

// Validate reports limits that cannot work.
func (l Limits) Validate() error {
	for _, v := range []struct {
		name string
		n    int
	}{
		{"max-conns", l.Conns}, {"max-conns-per-ip", l.ConnsPerIP}, {"max-conns-per-subnet", l.ConnsPerSubnet},
		{"max-handshakes", l.Handshakes}, {"conn-burst-per-ip", l.ConnBurstPerIP}, {"conn-burst-per-subnet", l.ConnBurstPerSubnet},
		{"max-streams", l.Streams}, {"max-streams-per-peer", l.StreamsPerPeer}, {"max-streams-per-ip", l.StreamsPerIP},
		{"max-streams-per-subnet", l.StreamsPerSubnet}, {"max-negotiating", l.Negotiating},
		{"max-negotiating-per-peer", l.NegotiatingPerPeer}, {"max-negotiating-per-ip", l.NegotiatingPerIP},
		{"max-negotiating-per-subnet", l.NegotiatingPerSubnet},
	} {
		if v.n < 1 {
			return fmt.Errorf("%s must be at least 1, not %d", v.name, v.n)
		}
	}
	switch {
	case l.Memory < 16<<20:
		return fmt.Errorf("max-memory must be at least 16 MiB, not %d bytes", l.Memory)
	case l.ConnRatePerIP <= 0 || l.ConnRatePerSubnet <= 0:
		return fmt.Errorf("connection rates must be positive")
	case l.NegotiationTimeout <= 0 || l.IdleConnTimeout <= 0:
		return fmt.Errorf("negotiation-timeout and idle-conn-timeout must be positive")
	}
	return nil
}

// flags registers a setting for every limit, its default the value in l.
func (l *Limits) flags(fs *flag.FlagSet) {
	fs.Int64Var(&l.Memory, "max-memory", l.Memory, "bytes the libp2p stack may reserve")
	fs.IntVar(&l.Conns, "max-conns", l.Conns, "inbound connections")
	fs.IntVar(&l.ConnsPerIP, "max-conns-per-ip", l.ConnsPerIP, "connections from one IPv4 address or IPv6 /64")
	fs.IntVar(&l.ConnsPerSubnet, "max-conns-per-subnet", l.ConnsPerSubnet, "connections from one IPv4 /24 or IPv6 /48")
	fs.IntVar(&l.Handshakes, "max-handshakes", l.Handshakes, "inbound connections in their security handshake")
	fs.Float64Var(&l.ConnRatePerIP, "conn-rate-per-ip", l.ConnRatePerIP, "new connections a second from one IPv4 address or IPv6 /64, once its burst is spent")
	fs.IntVar(&l.ConnBurstPerIP, "conn-burst-per-ip", l.ConnBurstPerIP, "new connections at once from one IPv4 address or IPv6 /64")
	fs.Float64Var(&l.ConnRatePerSubnet, "conn-rate-per-subnet", l.ConnRatePerSubnet, "new connections a second from one IPv4 /24 or IPv6 /48, once its burst is spent")
	fs.IntVar(&l.ConnBurstPerSubnet, "conn-burst-per-subnet", l.ConnBurstPerSubnet, "new connections at once from one IPv4 /24 or IPv6 /48")
	fs.DurationVar(&l.IdleConnTimeout, "idle-conn-timeout", l.IdleConnTimeout, "close an inbound connection that carries no stream for this long")
	fs.IntVar(&l.Streams, "max-streams", l.Streams, "rendezvous streams, waiting ones included")
	fs.IntVar(&l.StreamsPerPeer, "max-streams-per-peer", l.StreamsPerPeer, "rendezvous streams of one peer")
	fs.IntVar(&l.StreamsPerIP, "max-streams-per-ip", l.StreamsPerIP, "rendezvous streams from one IPv4 address or IPv6 /64")
	fs.IntVar(&l.StreamsPerSubnet, "max-streams-per-subnet", l.StreamsPerSubnet, "rendezvous streams from one IPv4 /24 or IPv6 /48")
	fs.IntVar(&l.Negotiating, "max-negotiating", l.Negotiating, "inbound streams negotiating their protocol")
	fs.IntVar(&l.NegotiatingPerPeer, "max-negotiating-per-peer", l.NegotiatingPerPeer, "negotiating streams of one peer")
	fs.IntVar(&l.NegotiatingPerIP, "max-negotiating-per-ip", l.NegotiatingPerIP, "negotiating streams from one IPv4 address or IPv6 /64")
	fs.IntVar(&l.NegotiatingPerSubnet, "max-negotiating-per-subnet", l.NegotiatingPerSubnet, "negotiating streams from one IPv4 /24 or IPv6 /48")
	fs.DurationVar(&l.NegotiationTimeout, "negotiation-timeout", l.NegotiationTimeout, "reset an inbound stream that has not agreed on a protocol by then")
	fs.BoolVar(&l.LimitLoopback, "limit-loopback", l.LimitLoopback, "apply the per-source limits, rates and registration quotas to 127.0.0.0/8 and ::1 too (exempt by default)")
}

// Peers open a few streams of other protocols besides rendezvous ones
// (identify, ping); the limits of the whole host leave room for them.
const otherStreamsPerConn = 4

// resourceLimits are go-libp2p's resource-manager limits for l: its scaled
// defaults for the scopes l does not name (identify, ping and the other
// services of the host), l's values for the rest.
func (l Limits) resourceLimits() rcmgr.ConcreteLimitConfig {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	base := scaling.Scale(l.Memory, 2*l.Conns)

	v := func(n int) rcmgr.LimitVal { return rcmgr.LimitVal(n) }
	inbound := l.Streams + l.Negotiating + otherStreamsPerConn*l.Conns
	rdv := rcmgr.ResourceLimits{StreamsInbound: v(l.Streams), Streams: v(l.Streams)}
	rdvPeer := rcmgr.ResourceLimits{StreamsInbound: v(l.StreamsPerPeer), Streams: v(l.StreamsPerPeer)}
	perPeer := l.StreamsPerPeer + l.NegotiatingPerPeer + 2*otherStreamsPerConn
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			ConnsInbound: v(l.Conns), Conns: v(l.Conns + 256), FD: v(l.Conns + 256),
			StreamsInbound: v(inbound), Streams: v(inbound + 4096),
			Memory: rcmgr.LimitVal64(l.Memory),
		},
		Transient: rcmgr.ResourceLimits{
			ConnsInbound: v(l.Handshakes), Conns: v(l.Handshakes + 64), FD: v(l.Handshakes + 64),
			StreamsInbound: v(l.Negotiating), Streams: v(l.Negotiating + 256),
		},
		Service:      map[string]rcmgr.ResourceLimits{rendezvous.ServiceName: rdv},
		ServicePeer:  map[string]rcmgr.ResourceLimits{rendezvous.ServiceName: rdvPeer},
		Protocol:     map[protocol.ID]rcmgr.ResourceLimits{rendezvous.ProtocolID: rdv, rendezvous.CanvasProtocolID: rdv},
		ProtocolPeer: map[protocol.ID]rcmgr.ResourceLimits{rendezvous.ProtocolID: rdvPeer, rendezvous.CanvasProtocolID: rdvPeer},
		PeerDefault:  rcmgr.ResourceLimits{StreamsInbound: v(perPeer), Streams: v(perPeer + 64)},
	}
	return partial.Build(base)
}

// connManagerWatermarks are the low and high watermarks of the connection
// manager: past high it closes the connections that are out of their grace
// period, down to low.
func (l Limits) connManagerWatermarks() (low, high int) {
	return l.Conns * 3 / 4, l.Conns * 9 / 10
}
