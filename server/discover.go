package server

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/store"
)

func (s *Server) handleDiscover(ctx context.Context, r Request, req *pb.Message_Discover) (*pb.Message, rendezvous.Status) {
	p, err := s.discover(ctx, r.Scope, r.Peer, req)
	if err != nil {
		return discoverRefusal(err), rendezvous.StatusOf(err)
	}
	defer s.putPageBuffer(p.buf)
	regs := make([]*pb.Message_Register, len(p.regs))
	// The page's messages, in one allocation.
	items := make([]discovered, len(p.regs))
	for i, r := range p.regs {
		it := &items[i]
		it.ns, it.ttl = r.Namespace, remainingSeconds(r.Expires, p.now)
		it.reg.Ns, it.reg.SignedPeerRecord, it.reg.Ttl = &it.ns, r.Record, &it.ttl
		regs[i] = &it.reg
	}
	return newDiscoverAnswer(rendezvous.StatusOK, "", regs, p.cookie.Encode()), rendezvous.StatusOK
}

// appendDiscover appends the answer to a DISCOVER to b as handleDiscover
// gives it, with its length prefix, written from the store's page without
// building its messages.
func (s *Server) appendDiscover(ctx context.Context, b []byte, r Request, req *pb.Message_Discover) ([]byte, rendezvous.Status) {
	p, err := s.discover(ctx, r.Scope, r.Peer, req)
	if err != nil {
		return appendDelimited(b, discoverRefusal(err)), rendezvous.StatusOf(err)
	}
	defer s.putPageBuffer(p.buf)
	return appendDiscoverPage(b, p), rendezvous.StatusOK
}

// discoverPage is a page of registrations to answer a DISCOVER with.
type discoverPage struct {
	// regs are the registrations, in the page buffer buf, which the
	// caller gives back with putPageBuffer.
	regs []store.Registration
	buf  *[]store.Registration
	// size is what regs take in a DISCOVER_RESPONSE.
	size   int
	now    time.Time
	cookie rendezvous.Cookie
}

// discoverRefusal is the answer to a DISCOVER refused with err.
func discoverRefusal(err error) *pb.Message {
	return newDiscoverAnswer(rendezvous.StatusOf(err), errorText(err), []*pb.Message_Register{}, []byte{})
}

func (s *Server) discover(ctx context.Context, scope network.ResourceScope, remote peer.ID, req *pb.Message_Discover) (discoverPage, error) {
	ns := req.GetNs()
	if err := rendezvous.ValidateDiscoverNamespace(ns); err != nil {
		return discoverPage{}, err
	}
	cookie, err := rendezvous.DecodeCookie(req.GetCookie(), ns)
	if err != nil {
		return discoverPage{}, err
	}
	if s.acl != nil && !s.acl.AllowDiscover(remote, ns) {
		s.refused(pb.Message_DISCOVER, RefusedACL)
		return discoverPage{}, rendezvous.Errorf(rendezvous.StatusNotAuthorized, "not allowed to discover in this namespace")
	}
	limit := s.rc.DefaultDiscoverLimit
	if l := req.GetLimit(); l > 0 {
		limit = int(min(l, uint64(s.rc.MaxDiscoverLimit)))
	}
	if scope != nil {
		if err := scope.ReserveMemory(s.rc.MaxDiscoverResponseSize, network.ReservationPriorityHigh); err != nil {
			return discoverPage{}, rendezvous.Errorf(rendezvous.StatusUnavailable, "out of resources")
		}
		defer scope.ReleaseMemory(s.rc.MaxDiscoverResponseSize)
	}
	now := s.now()
	page := s.pageBuffer()
	found, err := s.store.Discover(ctx, (*page)[:0], ns, cookie.Seq, limit, now)
	*page = found
	if err != nil {
		s.putPageBuffer(page)
		return discoverPage{}, s.storeError(pb.Message_DISCOVER, err)
	}
	budget := s.rc.MaxDiscoverResponseSize - responseOverhead
	// The registrations kept move to the front of the page.
	kept, size := found[:0], 0
	for _, r := range found {
		cost := registrationSize(r.Namespace, r.Record, remainingSeconds(r.Expires, now))
		if cost > budget {
			if len(kept) > 0 || cost <= s.rc.MaxDiscoverResponseSize-responseOverhead {
				break // the next page starts with it
			}
			// It fits in no response (stored under larger limits than
			// today's): pass over it rather than stall every cookie here.
			s.log.Debug("registration larger than a DISCOVER response", "ns", r.Namespace, "peer", r.Peer, "bytes", cost)
			cookie.Seq = r.Seq
			continue
		}
		budget -= cost
		size += cost
		kept = append(kept, r)
		cookie.Seq = r.Seq
	}
	return discoverPage{regs: kept, buf: page, size: size, now: now, cookie: cookie}, nil
}

// pageBuffer returns a buffer for the registrations of one DISCOVER.
func (s *Server) pageBuffer() *[]store.Registration {
	if b, ok := s.pages.Get().(*[]store.Registration); ok {
		return b
	}
	return new([]store.Registration)
}

// putPageBuffer keeps b for another DISCOVER, without the records it refers
// to. A page holds at most MaxDiscoverLimit registrations, which bounds the
// buffers kept; the pool lets the garbage collector have them when idle.
func (s *Server) putPageBuffer(b *[]store.Registration) {
	clear(*b)
	*b = (*b)[:0]
	s.pages.Put(b)
}

// remainingSeconds is the TTL left until expires, rounded up so that a live
// registration never shows a TTL of 0.
func remainingSeconds(expires, now time.Time) uint64 {
	left := expires.Sub(now)
	if left <= 0 {
		return 1
	}
	return uint64((left + time.Second - 1) / time.Second)
}
