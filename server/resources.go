package server

import (
	"fmt"
	"time"

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
	// RecordCacheSize bounds the peers whose last verified signed peer
	// record the point remembers, so that a refresh with the same record
	// skips the signature check; 0 remembers none. About 100 bytes plus
	// the record per peer. Default 65,536.
	RecordCacheSize int
	// StatsInterval is how often the store's counts are reported to the
	// MetricsTracer. Default 15 s.
	StatsInterval time.Duration
}

// Defaults of Resources.
const (
	DefaultMaxRegistrationsPerPeer = 1000
	DefaultMaxRegistrations        = 1_000_000
	DefaultMaxNamespaces           = 100_000
	DefaultDiscoverLimit           = 1000
	DefaultMaxDiscoverLimit        = 1000
	DefaultMaxDiscoverResponseSize = 64 << 10
	DefaultMaxRequestSize          = 64 << 10
	DefaultIdleTimeout             = 5 * time.Minute
	DefaultRequestTimeout          = 10 * time.Second
	DefaultStatsInterval           = 15 * time.Second
	DefaultRecordCacheSize         = 1 << 16
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
		DefaultDiscoverLimit:    DefaultDiscoverLimit,
		MaxDiscoverLimit:        DefaultMaxDiscoverLimit,
		MaxDiscoverResponseSize: DefaultMaxDiscoverResponseSize,
		MaxRequestSize:          DefaultMaxRequestSize,
		MaxRecordSize:           rendezvous.DefaultMaxRecordSize,
		IdleTimeout:             DefaultIdleTimeout,
		RequestTimeout:          DefaultRequestTimeout,
		StatsInterval:           DefaultStatsInterval,
		RecordCacheSize:         DefaultRecordCacheSize,
	}
}

// TTLPolicy returns the TTL range and default of r.
func (r Resources) TTLPolicy() rendezvous.TTLPolicy {
	return rendezvous.TTLPolicy{Min: r.MinTTL, Max: r.MaxTTL, Default: r.DefaultTTL}
}

func (r Resources) storeLimits() store.Limits {
	return store.Limits{
		MaxRegistrationsPerPeer: r.MaxRegistrationsPerPeer,
		MaxRegistrations:        r.MaxRegistrations,
		MaxNamespaces:           r.MaxNamespaces,
	}
}

// Validate reports limits that cannot work together.
func (r Resources) Validate() error {
	if err := r.TTLPolicy().Validate(); err != nil {
		return err
	}
	switch {
	case r.MaxRegistrationsPerPeer < 1 || r.MaxRegistrations < 1 || r.MaxNamespaces < 1:
		return fmt.Errorf("registration limits must be at least 1")
	case r.DefaultDiscoverLimit < 1 || r.MaxDiscoverLimit < r.DefaultDiscoverLimit:
		return fmt.Errorf("discover limits: need 1 <= default (%d) <= max (%d)", r.DefaultDiscoverLimit, r.MaxDiscoverLimit)
	case r.MaxRecordSize < 1:
		return fmt.Errorf("record size limit must be at least 1")
	case r.MaxRequestSize < r.MaxRecordSize+registrationOverhead:
		return fmt.Errorf("request size limit %d cannot hold a %d-byte record", r.MaxRequestSize, r.MaxRecordSize)
	case r.MaxDiscoverResponseSize < r.MaxRecordSize+registrationOverhead+responseOverhead:
		return fmt.Errorf("discover response size limit %d cannot hold a %d-byte record", r.MaxDiscoverResponseSize, r.MaxRecordSize)
	case r.RecordCacheSize < 0:
		return fmt.Errorf("record cache size must not be negative")
	case r.IdleTimeout <= 0 || r.RequestTimeout <= 0 || r.StatsInterval <= 0:
		return fmt.Errorf("timeouts and intervals must be positive")
	}
	return nil
}
