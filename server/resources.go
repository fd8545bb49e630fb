package server

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/x/rate"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/store"
)

// Resources are the limits of a rendezvous point. Every field has a default,
// filled by DefaultResources; WithResources replaces them all.
type Resources struct {
	// MinTTL is the shortest TTL a REGISTER may ask for. Default 2 h.
	MinTTL time.Duration
	// MaxTTL is the longest TTL a REGISTER may ask for. Default 72 h.
	MaxTTL time.Duration
	// DefaultTTL is granted to a REGISTER that asks for none. Default 2 h.
	DefaultTTL time.Duration

	// MaxRegistrationsPerPeer bounds the live namespaces a peer is
	// registered in; refreshing one always succeeds. Default 1000.
	MaxRegistrationsPerPeer int
	// MaxRegistrations bounds the live registrations of the point.
	// Default 1,000,000.
	MaxRegistrations int
	// MaxNamespaces bounds the namespaces holding live registrations.
	// Default 100,000.
	MaxNamespaces int

	// MaxRegistrationsPerIPv4 bounds the live registrations made from one
	// IPv4 address, refreshing always allowed; beyond it E_NOT_AUTHORIZED.
	// Default 1000: a NAT gateway of a hundred peers in ten namespaces
	// each.
	MaxRegistrationsPerIPv4 int
	// MaxRegistrationsPerIPv4Net bounds those of one IPv4 /24. Default
	// 5000: a few such gateways of one organisation.
	MaxRegistrationsPerIPv4Net int
	// MaxRegistrationsPerIPv6Subnet bounds those of one IPv6 /64, the
	// IPv6 counterpart of one address: one host or one LAN. Default 1000.
	MaxRegistrationsPerIPv6Subnet int
	// MaxRegistrationsPerIPv6Net bounds those of one IPv6 /48, a site.
	// Default 5000.
	MaxRegistrationsPerIPv6Net int

	// CrowdedPercent is the fill, in percent of MaxRegistrations (or of
	// MaxNamespaces, for a registration that opens a namespace), above
	// which the point is crowded: a network (IPv4 /24, IPv6 /48) holding
	// CrowdedShare live registrations gets no new one (E_UNAVAILABLE),
	// so that the rest stays for the networks holding fewer. Default 90.
	CrowdedPercent int
	// CrowdedShare is the share of a crowded point a network may hold and
	// still register anew. Default 100: ten peers in ten namespaces each.
	CrowdedShare int

	// RegisterRate bounds the REGISTER and UNREGISTER requests of one
	// source address (IPv4 /32, IPv6 /64): RPS per second in the long run,
	// Burst at once. Beyond it a REGISTER is answered E_UNAVAILABLE before
	// anything else is looked at; an UNREGISTER is dropped. Default 5 per
	// second, burst 100: a peer registering in many namespaces at start,
	// a gateway of peers refreshing one-minute TTLs.
	RegisterRate rate.Limit
	// RegisterNetRate bounds them per network (IPv4 /24, IPv6 /48).
	// Default 20 per second, burst 400.
	RegisterNetRate rate.Limit
	// DiscoverRate bounds the DISCOVER requests of one source address.
	// Default 10 per second, burst 100: pollers of a few namespaces.
	DiscoverRate rate.Limit
	// DiscoverNetRate bounds them per network. Default 50 per second,
	// burst 500.
	DiscoverNetRate rate.Limit

	// DefaultDiscoverLimit is the limit of a DISCOVER that gives none (or 0).
	// Default 1000.
	DefaultDiscoverLimit int
	// MaxDiscoverLimit caps the limit of a DISCOVER; larger limits are
	// lowered to it. Default 1000.
	MaxDiscoverLimit int
	// MaxDiscoverResponseSize bounds a DISCOVER response in bytes, framing
	// included; the cookie continues where it stopped. Default 64 KiB, the
	// most that nim-libp2p clients read.
	MaxDiscoverResponseSize int

	// MaxRequestSize bounds a request message; a peer sending a larger one
	// has its stream reset. A request's buffer is reserved in the stream's
	// resource scope only while the request is read and decoded, not while
	// the stream waits. Default 64 KiB.
	MaxRequestSize int
	// MaxRecordSize bounds the signed peer record of a REGISTER.
	// Default 8 KiB.
	MaxRecordSize int

	// IdleTimeout bounds the wait for the next request on a stream. Clients
	// that poll on one stream (the Waku one asks every 2 minutes) need it
	// well above their interval; a waiting stream holds no request buffer,
	// only its goroutine and the transport's own state. Default 5 min.
	IdleTimeout time.Duration
	// RequestTimeout bounds reading a request once its first bytes are in,
	// and handling it, store calls and writing the response included.
	// Default 10 s.
	RequestTimeout time.Duration
	// FaultLogInterval is the least time between two log lines about the
	// same store fault (a full disk, a database gone); the next line says
	// how many were held back. Default 10 s.
	FaultLogInterval time.Duration
	// RecordCacheSize bounds the peers whose last verified signed peer
	// record the point remembers, so that a refresh with the same record
	// skips the signature check; 0 remembers none. About 100 bytes plus
	// the record per peer. Default 65,536.
	RecordCacheSize int
	// StreamWorkers bounds the goroutines kept to serve streams. The host
	// starts a goroutine per stream, whose small stack is copied to a
	// larger one when the request is decoded; a worker keeps its grown
	// stack from one stream to the next, so a stream handed to an idle
	// worker is served without that copy (about 10 µs of CPU). A stream
	// arriving while every worker is busy is served on the host's
	// goroutine, as with 0, which keeps none. Default 256.
	StreamWorkers int
	// StreamWorkerIdle is how long a worker waits for a stream before it
	// exits. Default 30 s.
	StreamWorkerIdle time.Duration
	// StatsInterval is how often the store's counts are reported to the
	// MetricsTracer. Default 15 s.
	StatsInterval time.Duration
}

// Defaults of Resources.
const (
	DefaultMaxRegistrationsPerPeer = 1000
	DefaultMaxRegistrations        = 1_000_000
	DefaultMaxNamespaces           = 100_000
	DefaultMaxPerIPv4              = 1000
	DefaultMaxPerIPv4Net           = 5000
	DefaultMaxPerIPv6Subnet        = 1000
	DefaultMaxPerIPv6Net           = 5000
	DefaultCrowdedPercent          = 90
	DefaultCrowdedShare            = 100
	DefaultDiscoverLimit           = 1000
	DefaultMaxDiscoverLimit        = 1000
	DefaultMaxDiscoverResponseSize = 64 << 10
	DefaultMaxRequestSize          = 64 << 10
	DefaultIdleTimeout             = 5 * time.Minute
	DefaultRequestTimeout          = 10 * time.Second
	DefaultStatsInterval           = 15 * time.Second
	DefaultRecordCacheSize         = 1 << 16
	DefaultFaultLogInterval        = 10 * time.Second
	DefaultStreamWorkers           = 256
	DefaultStreamWorkerIdle        = 30 * time.Second
)

// Default rates of Resources.
var (
	DefaultRegisterRate    = rate.Limit{RPS: 5, Burst: 100}
	DefaultRegisterNetRate = rate.Limit{RPS: 20, Burst: 400}
	DefaultDiscoverRate    = rate.Limit{RPS: 10, Burst: 100}
	DefaultDiscoverNetRate = rate.Limit{RPS: 50, Burst: 500}
)

// responseOverhead is what a DISCOVER response needs besides its
// registrations: framing, type, status, an empty status text and the
// longest cookie, rounded up.
const responseOverhead = 512

// registrationOverhead bounds what a registration adds to a DISCOVER
// response besides its record: the namespace, the TTL and the tags and
// lengths around them, rounded up.
const registrationOverhead = rendezvous.MaxNamespaceLength + 32

// DefaultResources returns the default limits.
func DefaultResources() Resources {
	return Resources{
		MinTTL:                  rendezvous.DefaultMinTTL,
		MaxTTL:                  rendezvous.DefaultMaxTTL,
		DefaultTTL:              rendezvous.DefaultTTL,
		MaxRegistrationsPerPeer: DefaultMaxRegistrationsPerPeer,
		MaxRegistrations:        DefaultMaxRegistrations,
		MaxNamespaces:           DefaultMaxNamespaces,

		MaxRegistrationsPerIPv4:       DefaultMaxPerIPv4,
		MaxRegistrationsPerIPv4Net:    DefaultMaxPerIPv4Net,
		MaxRegistrationsPerIPv6Subnet: DefaultMaxPerIPv6Subnet,
		MaxRegistrationsPerIPv6Net:    DefaultMaxPerIPv6Net,
		CrowdedPercent:                DefaultCrowdedPercent,
		CrowdedShare:                  DefaultCrowdedShare,
		RegisterRate:                  DefaultRegisterRate,
		RegisterNetRate:               DefaultRegisterNetRate,
		DiscoverRate:                  DefaultDiscoverRate,
		DiscoverNetRate:               DefaultDiscoverNetRate,

		DefaultDiscoverLimit:    DefaultDiscoverLimit,
		MaxDiscoverLimit:        DefaultMaxDiscoverLimit,
		MaxDiscoverResponseSize: DefaultMaxDiscoverResponseSize,
		MaxRequestSize:          DefaultMaxRequestSize,
		MaxRecordSize:           rendezvous.DefaultMaxRecordSize,
		IdleTimeout:             DefaultIdleTimeout,
		RequestTimeout:          DefaultRequestTimeout,
		StatsInterval:           DefaultStatsInterval,
		RecordCacheSize:         DefaultRecordCacheSize,
		FaultLogInterval:        DefaultFaultLogInterval,
		StreamWorkers:           DefaultStreamWorkers,
		StreamWorkerIdle:        DefaultStreamWorkerIdle,
	}
}

// TTLPolicy returns the TTL range and default of r.
func (r Resources) TTLPolicy() rendezvous.TTLPolicy {
	return rendezvous.TTLPolicy{Min: r.MinTTL, Max: r.MaxTTL, Default: r.DefaultTTL}
}

// storeLimits are the limits of a registration; trusted ones are held by
// no per-source quota.
func (r Resources) storeLimits(trusted bool) store.Limits {
	l := store.Limits{
		MaxRegistrationsPerPeer: r.MaxRegistrationsPerPeer,
		MaxRegistrations:        r.MaxRegistrations,
		MaxNamespaces:           r.MaxNamespaces,
	}
	if !trusted {
		l.MaxPerIPv4Address = r.MaxRegistrationsPerIPv4
		l.MaxPerIPv4Net = r.MaxRegistrationsPerIPv4Net
		l.MaxPerIPv6Subnet = r.MaxRegistrationsPerIPv6Subnet
		l.MaxPerIPv6Net = r.MaxRegistrationsPerIPv6Net
		l.CrowdedRegistrations = max(1, int(int64(r.MaxRegistrations)*int64(r.CrowdedPercent)/100))
		l.CrowdedNamespaces = max(1, int(int64(r.MaxNamespaces)*int64(r.CrowdedPercent)/100))
		l.CrowdedShare = r.CrowdedShare
	}
	return l
}

// Validate reports limits that cannot work together.
func (r Resources) Validate() error {
	if err := r.TTLPolicy().Validate(); err != nil {
		return err
	}
	switch {
	case r.MaxRegistrationsPerPeer < 1 || r.MaxRegistrations < 1 || r.MaxNamespaces < 1:
		return fmt.Errorf("registration limits must be at least 1")
	case r.MaxRegistrationsPerIPv4 < 1 || r.MaxRegistrationsPerIPv4Net < 1 ||
		r.MaxRegistrationsPerIPv6Subnet < 1 || r.MaxRegistrationsPerIPv6Net < 1:
		return fmt.Errorf("per-source quotas must be at least 1")
	case r.CrowdedPercent < 1 || r.CrowdedPercent > 100:
		return fmt.Errorf("crowded percent %d: need 1 to 100", r.CrowdedPercent)
	case r.CrowdedShare < 1:
		return fmt.Errorf("crowded share must be at least 1")
	case !validRate(r.RegisterRate) || !validRate(r.RegisterNetRate) || !validRate(r.DiscoverRate) || !validRate(r.DiscoverNetRate):
		return fmt.Errorf("rates need a positive rate and a burst of at least 1")
	case r.DefaultDiscoverLimit < 1 || r.MaxDiscoverLimit < r.DefaultDiscoverLimit:
		return fmt.Errorf("discover limits: need 1 <= default (%d) <= max (%d)", r.DefaultDiscoverLimit, r.MaxDiscoverLimit)
	case r.MaxRecordSize < 1:
		return fmt.Errorf("record size limit must be at least 1")
	case r.MaxRequestSize < r.MaxRecordSize+registrationOverhead:
		return fmt.Errorf("request size limit %d cannot hold a %d-byte record", r.MaxRequestSize, r.MaxRecordSize)
	case r.MaxDiscoverResponseSize < r.MaxRecordSize+registrationOverhead+responseOverhead:
		return fmt.Errorf("discover response size limit %d cannot hold a %d-byte record", r.MaxDiscoverResponseSize, r.MaxRecordSize)
	case r.FaultLogInterval < 0:
		return fmt.Errorf("fault log interval must not be negative")
	case r.RecordCacheSize < 0:
		return fmt.Errorf("record cache size must not be negative")
	case r.StreamWorkers < 0:
		return fmt.Errorf("stream workers must not be negative")
	case r.StreamWorkers > 0 && r.StreamWorkerIdle <= 0:
		return fmt.Errorf("stream worker idle time must be positive")
	case r.IdleTimeout <= 0 || r.RequestTimeout <= 0 || r.StatsInterval <= 0:
		return fmt.Errorf("timeouts and intervals must be positive")
	}
	return nil
}

// validRate reports whether l lets requests through: x/rate reads a zero
// rate as no limit, which a Resources field never means.
func validRate(l rate.Limit) bool { return l.RPS > 0 && l.Burst >= 1 }
