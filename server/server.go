// Package server is the rendezvous point: it serves /rendezvous/1.0.0 on a
// libp2p host, keeping registrations in a store.Store.
//
// # Abuse
//
// A point is public infrastructure and peer IDs cost nothing, so every
// limit that matters is per source, the IP address of the connection
// (SourceOf), counted at two widths: the address (IPv4 /32, IPv6 /64, one
// host or one LAN) and its network (IPv4 /24, IPv6 /48, an organisation or
// a site). Three layers, from the cheapest:
//
//   - Rates (Resources.RegisterRate, DiscoverRate and their Net forms):
//     go-libp2p's x/rate token buckets per prefix, checked before a
//     request's record, its namespace or the store is looked at, so a flood
//     costs a decode and a map lookup per request. Rates are per point and
//     in memory, and run on the wall clock.
//   - Quotas (Resources.MaxRegistrationsPerIPv4...): live registrations per
//     prefix, counted by the store with each registration's source, so they
//     are exact and hold across points sharing a database. The defaults,
//     1000 per address and 5000 per network, are generous because one
//     address is often a NAT gateway of many honest peers (a hundred peers
//     in ten namespaces each), and because the point's caps are far above
//     them: one network gets 0.5% of the default 1,000,000.
//   - Headroom (Resources.CrowdedPercent, CrowdedShare): quotas alone let
//     an attacker with many networks (one IPv6 /32 holds 65,536 /48s) fill
//     the point, after which every newcomer is refused for as long as the
//     attacker's TTLs last. Above 90% of MaxRegistrations (or of
//     MaxNamespaces, for a registration opening a namespace) a network
//     that already holds 100 live registrations gets no new one, while
//     networks holding fewer still register: the last 10% is kept for the
//     many small sources, and an attacker needs ten times the networks to
//     take it. Refreshes of live registrations always succeed, at every
//     limit, so a full point keeps serving the peers it holds.
//
// Trusted sources (Allowlist) are held by no quota and no rate, and their
// registrations count in no quota. A peer reached through a relay counts at
// the relay's address (see SourceOf).
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/x/rate"
	"github.com/libp2p/go-msgio"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/store"
)

// Server is a rendezvous point mounted on a host.
type Server struct {
	host      host.Host
	store     store.Store
	rc        Resources
	ttl       rendezvous.TTLPolicy
	acl       ACLFilter
	allow     Allowlist
	mt        MetricsTracer
	log       *slog.Logger
	now       func() time.Time
	protocols []protocol.ID
	records   *recordCache
	health    storeHealth
	faultLogs *logLimiter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	streams map[network.Stream]struct{}

	// pages holds *[]store.Registration buffers that DISCOVERs read into.
	pages sync.Pool
	// responses holds *[]byte buffers that responses are written from.
	responses sync.Pool

	// registerRate and discoverRate hold the rates of each source.
	registerRate, discoverRate *rate.Limiter

	workers streamWorkers
}

// New mounts a rendezvous point on h, keeping registrations in st. The
// caller keeps ownership of h and st; Close unmounts the point.
func New(h host.Host, st store.Store, opts ...Option) (*Server, error) {
	s := &Server{
		host:      h,
		store:     st,
		rc:        DefaultResources(),
		log:       slog.Default(),
		now:       time.Now,
		protocols: []protocol.ID{rendezvous.ProtocolID},
		streams:   make(map[network.Stream]struct{}),
		workers:   streamWorkers{streams: make(chan network.Stream)},
	}
	for _, opt := range opts {
		if err := opt(s); err != nil {
			return nil, err
		}
	}
	if err := s.rc.Validate(); err != nil {
		return nil, fmt.Errorf("rendezvous server: %w", err)
	}
	if len(s.protocols) == 0 {
		return nil, errors.New("rendezvous server: no protocol to serve")
	}
	s.ttl = s.rc.TTLPolicy()
	s.faultLogs = newLogLimiter(s.rc.FaultLogInterval)
	var err error
	if s.records, err = newRecordCache(s.rc.RecordCacheSize); err != nil {
		return nil, fmt.Errorf("rendezvous server: %w", err)
	}
	s.registerRate = newLimiter(s.rc.RegisterRate, s.rc.RegisterNetRate, s.allow.Prefixes)
	s.discoverRate = newLimiter(s.rc.DiscoverRate, s.rc.DiscoverNetRate, s.allow.Prefixes)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, id := range s.protocols {
		h.SetStreamHandler(id, s.handleStream)
	}
	if s.mt != nil {
		s.wg.Add(1)
		go s.reportStats()
	}
	return s, nil
}

// Close unmounts the point: it stops accepting streams, lets each request
// in flight finish, closes the open streams and returns when they are done.
// It does not close the store or the host.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, id := range s.protocols {
		s.host.RemoveStreamHandler(id)
	}
	// Wake the handlers waiting for a next request; one busy with a
	// request finishes it first.
	for str := range s.streams {
		_ = str.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// track adds str to the open streams, unless the server is closed.
func (s *Server) track(str network.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.streams[str] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) untrack(str network.Stream) {
	s.mu.Lock()
	delete(s.streams, str)
	s.mu.Unlock()
	s.wg.Done()
}

// serveStream answers the requests of str until the peer closes it, it
// waits longer than Resources.IdleTimeout for one, or the point closes.
func (s *Server) serveStream(str network.Stream) {
	if !s.track(str) {
		_ = str.Reset()
		return
	}
	defer s.untrack(str)
	if err := str.Scope().SetService(rendezvous.ServiceName); err != nil {
		s.streamLog(str).Debug("attaching stream to service scope", "err", err)
		_ = str.Reset()
		return
	}

	// While it waits for a request the stream holds no buffer: the reader
	// reads the length prefix a byte at a time, and a request's buffer is
	// reserved and taken from a pool only once its length is known.
	rd := msgio.NewVarintReaderSize(str, s.rc.MaxRequestSize)
	remote := str.Conn().RemotePeer()
	source := SourceOf(str.Conn())
	for {
		if s.isClosed() {
			_ = str.Close()
			return
		}
		_ = str.SetReadDeadline(time.Now().Add(s.rc.IdleTimeout))
		req, err := s.readRequest(str, rd)
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = str.Close()
				return
			}
			if !s.isClosed() {
				s.streamLog(str).Debug("reading request", "err", err)
			}
			_ = str.Reset()
			return
		}
		if !isRequest(req.GetType()) {
			s.streamLog(str).Debug("unexpected message", "type", req.GetType())
			_ = str.Reset()
			return
		}
		start := time.Now()
		_ = str.SetDeadline(start.Add(s.rc.RequestTimeout))
		// Not s.ctx: a request in flight when Close is called finishes.
		out := s.responseBuffer()
		resp, status := s.answer(context.Background(), Request{Message: req, Peer: remote, Source: source, Scope: str.Scope()}, out)
		if resp != nil {
			*out = appendDelimited(*out, resp)
		}
		if len(*out) > 0 {
			// One write: the length prefix and the message go out in one
			// frame.
			_, err = str.Write(*out)
		}
		s.responses.Put(out)
		if err != nil {
			s.streamLog(str).Debug("writing response", "err", err)
			_ = str.Reset()
			return
		}
		if s.mt != nil {
			s.mt.RequestHandled(req.GetType(), status, time.Since(start))
		}
	}
}

// errRequestTooLarge is a request longer than Resources.MaxRequestSize.
var errRequestTooLarge = errors.New("request too large")

// readRequest waits for the next request on str and reads it. The wait is
// bounded by the deadline already set (the idle timeout); once the length
// prefix is in, the stream's scope is charged for the request until it is
// decoded, and the rest must arrive within the request timeout, so a
// request that trickles in is cut off promptly.
func (s *Server) readRequest(str network.Stream, rd msgio.ReadCloser) (*pb.Message, error) {
	n, err := rd.NextMsgLen()
	if err != nil {
		return nil, err
	}
	if n > s.rc.MaxRequestSize {
		return nil, fmt.Errorf("%w: %d bytes", errRequestTooLarge, n)
	}
	_ = str.SetReadDeadline(time.Now().Add(s.rc.RequestTimeout))
	if err := str.Scope().ReserveMemory(n, network.ReservationPriorityAlways); err != nil {
		return nil, fmt.Errorf("reserving request buffer: %w", err)
	}
	defer str.Scope().ReleaseMemory(n)
	buf, err := rd.ReadMsg()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the peer closed within a request
		}
		return nil, err
	}
	defer rd.ReleaseMsg(buf)
	var req pb.Message
	if err := proto.Unmarshal(buf, &req); err != nil {
		return nil, fmt.Errorf("decoding request: %w", err)
	}
	return &req, nil
}

// responseBuffer returns an empty buffer to write a response from, kept
// for the next response once written. A response is at most
// MaxDiscoverResponseSize long (a DISCOVER's page is cut to fit it), which
// bounds the buffers kept; the pool lets the garbage collector have them
// when idle.
func (s *Server) responseBuffer() *[]byte {
	if b, ok := s.responses.Get().(*[]byte); ok {
		*b = (*b)[:0]
		return b
	}
	return new([]byte)
}

// streamLog is the logger of a stream's events.
func (s *Server) streamLog(str network.Stream) *slog.Logger {
	return s.log.With("peer", str.Conn().RemotePeer(), "protocol", str.Protocol())
}

// isRequest reports whether a client sends messages of type t.
func isRequest(t pb.Message_MessageType) bool {
	return t == pb.Message_REGISTER || t == pb.Message_DISCOVER || t == pb.Message_UNREGISTER
}

// HandleRequest answers one request: the response to write (nil for none)
// and its status. A message of a type that clients never send is answered
// with nothing and StatusInternalError. A request beyond its source's rate
// is refused before anything else is looked at. It never panics on any
// input.
func (s *Server) HandleRequest(ctx context.Context, req Request) (*pb.Message, rendezvous.Status) {
	return s.answer(ctx, req, nil)
}

// answer answers req as HandleRequest does. Given a buffer, it appends the
// answer to a DISCOVER served to it instead, as it is written on a stream
// (length prefix and message), and returns no message: the page goes from
// the store to the buffer without messages built in between.
func (s *Server) answer(ctx context.Context, req Request, out *[]byte) (*pb.Message, rendezvous.Status) {
	ctx, cancel := context.WithTimeout(ctx, s.rc.RequestTimeout)
	defer cancel()
	if !req.Source.IsValid() {
		req.Source = UnknownSource
	}
	req.Source = req.Source.Unmap()
	m := req.Message
	switch m.GetType() {
	case pb.Message_REGISTER:
		if err := s.checkRate(s.registerRate, req); err != nil {
			return registerRefusal(err), err.Status
		}
		return s.handleRegister(ctx, req, m.GetRegister())
	case pb.Message_DISCOVER:
		if err := s.checkRate(s.discoverRate, req); err != nil {
			return discoverRefusal(err), err.Status
		}
		if out != nil {
			var status rendezvous.Status
			*out, status = s.appendDiscover(ctx, *out, req, m.GetDiscover())
			return nil, status
		}
		return s.handleDiscover(ctx, req, m.GetDiscover())
	case pb.Message_UNREGISTER:
		if err := s.checkRate(s.registerRate, req); err != nil {
			return nil, err.Status
		}
		return nil, s.handleUnregister(ctx, req.Peer, m.GetUnregister())
	default:
		return nil, rendezvous.StatusInternalError
	}
}

// checkRate takes a token of req's source from l, unless the source is
// trusted, and refuses the request when there is none.
func (s *Server) checkRate(l *rate.Limiter, req Request) *rendezvous.Error {
	if slices.Contains(s.allow.Peers, req.Peer) || l.Allow(req.Source) {
		return nil
	}
	t := req.Message.GetType()
	s.refused(t, RefusedRate)
	return rendezvous.Errorf(rendezvous.StatusUnavailable, "rate limit: too many %s requests from your address or network; retry later", t)
}

// refused reports a refusal on a limit to the tracer, if there is one.
func (s *Server) refused(t pb.Message_MessageType, reason Refusal) {
	if s.mt != nil {
		s.mt.RequestRefused(t, reason)
	}
}

// storeError maps an error of the store to what a peer is told, reports
// the refusals on limits and logs what it hides.
func (s *Server) storeError(t pb.Message_MessageType, err error) *rendezvous.Error {
	var qe *store.QuotaError
	switch {
	case errors.As(err, &qe):
		s.refused(t, quotaRefusal(qe))
		return rendezvous.Errorf(rendezvous.StatusNotAuthorized, "%s", qe.Error())
	case errors.Is(err, store.ErrCrowded):
		s.refused(t, RefusedCrowded)
		return rendezvous.Errorf(rendezvous.StatusUnavailable, "point is nearly full and your network holds its share (%d registrations)", s.rc.CrowdedShare)
	case errors.Is(err, store.ErrPeerLimit):
		s.refused(t, RefusedPeer)
		return rendezvous.Errorf(rendezvous.StatusNotAuthorized, "peer has %d registrations already", s.rc.MaxRegistrationsPerPeer)
	case errors.Is(err, store.ErrFull):
		s.refused(t, RefusedFull)
		return rendezvous.Errorf(rendezvous.StatusUnavailable, "point is full")
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.refused(t, RefusedStore)
		s.faultLogs.log(s.log, slog.LevelWarn, "unavailable "+t.String(), "store unavailable", s.now(), "op", t.String(), "err", err)
		return rendezvous.Errorf(rendezvous.StatusUnavailable, "store unavailable")
	default:
		s.refused(t, RefusedStore)
		s.faultLogs.log(s.log, slog.LevelError, "failed "+t.String(), "store failed", s.now(), "op", t.String(), "err", err)
		return rendezvous.Errorf(rendezvous.StatusInternalError, "internal error")
	}
}

// storeFault reports whether err, from a store call, is the store's own
// failure rather than a refusal on a limit.
func storeFault(err error) bool {
	if err == nil {
		return false
	}
	var qe *store.QuotaError
	switch {
	case errors.As(err, &qe), errors.Is(err, store.ErrCrowded),
		errors.Is(err, store.ErrPeerLimit), errors.Is(err, store.ErrFull):
		return false
	}
	return true
}

// wrote records the outcome of a write to the store for Healthy.
func (s *Server) wrote(err error) {
	if !storeFault(err) {
		err = nil // the store answered: a refusal on a limit is no fault
	}
	s.health.wrote(err)
}

// quotaRefusal names the quota of qe.
func quotaRefusal(qe *store.QuotaError) Refusal {
	switch {
	case !qe.IPv6 && qe.Bits == store.IPv4AddressBits:
		return RefusedIPv4Quota
	case !qe.IPv6:
		return RefusedIPv4Net
	case qe.Bits == store.IPv6SubnetBits:
		return RefusedIPv6Subnet
	default:
		return RefusedIPv6Net
	}
}

func (s *Server) reportStats() {
	defer s.wg.Done()
	t := time.NewTicker(s.rc.StatsInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(s.ctx, s.rc.RequestTimeout)
		st, err := s.store.Stats(ctx, s.now())
		cancel()
		if err == nil {
			s.mt.StoreStats(st)
		} else if s.ctx.Err() == nil {
			s.log.Warn("reading store stats", "err", err)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}
