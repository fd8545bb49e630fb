package server

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Option configures a Server.
type Option func(*Server) error

// WithResources sets the limits of the point; see DefaultResources.
func WithResources(rc Resources) Option {
	return func(s *Server) error {
		s.rc = rc
		return nil
	}
}

// WithACL sets the access control of the point.
func WithACL(acl ACLFilter) Option {
	return func(s *Server) error {
		s.acl = acl
		return nil
	}
}

// WithAllowlist sets the trusted sources, which per-source quotas and rates
// do not hold.
func WithAllowlist(a Allowlist) Option {
	return func(s *Server) error {
		for _, p := range a.Prefixes {
			if !p.IsValid() {
				return fmt.Errorf("allowlist: invalid prefix %v", p)
			}
		}
		s.allow = Allowlist{
			Prefixes: append([]netip.Prefix(nil), a.Prefixes...),
			Peers:    append([]peer.ID(nil), a.Peers...),
		}
		return nil
	}
}

// WithMetricsTracer reports the point's activity to mt.
func WithMetricsTracer(mt MetricsTracer) Option {
	return func(s *Server) error {
		s.mt = mt
		return nil
	}
}

// WithLogger sets the logger; slog.Default() otherwise.
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) error {
		s.log = l
		return nil
	}
}

// WithClock sets the source of the current time, for tests that make
// registrations expire without waiting.
func WithClock(now func() time.Time) Option {
	return func(s *Server) error {
		s.now = now
		return nil
	}
}

// WithProtocols sets the protocol IDs the point serves, in place of
// rendezvous.ProtocolID alone. Pass rendezvous.ProtocolID and
// rendezvous.CanvasProtocolID to serve JavaScript peers on their default.
func WithProtocols(ids ...protocol.ID) Option {
	return func(s *Server) error {
		s.protocols = append([]protocol.ID(nil), ids...)
		return nil
	}
}
