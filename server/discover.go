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
	regs, cookie, err := s.discover(ctx, r.Scope, r.Peer, req)
	if err != nil {
		return discoverRefusal(err), rendezvous.StatusOf(err)
	}
	return newDiscoverAnswer(rendezvous.StatusOK, "", regs, cookie.Encode()), rendezvous.StatusOK
}

// discoverRefusal is the answer to a DISCOVER refused with err.
func discoverRefusal(err error) *pb.Message {
	return newDiscoverAnswer(rendezvous.StatusOf(err), errorText(err), []*pb.Message_Register{}, []byte{})
}

func (s *Server) discover(ctx context.Context, scope network.ResourceScope, remote peer.ID, req *pb.Message_Discover) ([]*pb.Message_Register, rendezvous.Cookie, error) {
	ns := req.GetNs()
	if err := rendezvous.ValidateDiscoverNamespace(ns); err != nil {
		return nil, rendezvous.Cookie{}, err
	}
	cookie, err := rendezvous.DecodeCookie(req.GetCookie(), ns)
	if err != nil {
		return nil, rendezvous.Cookie{}, err
	}
	if s.acl != nil && !s.acl.AllowDiscover(remote, ns) {
		s.refused(pb.Message_DISCOVER, RefusedACL)
		return nil, rendezvous.Cookie{}, rendezvous.Errorf(rendezvous.StatusNotAuthorized, "not allowed to discover in this namespace")
	}
	limit := s.rc.DefaultDiscoverLimit
	if l := req.GetLimit(); l > 0 {
		limit = int(min(l, uint64(s.rc.MaxDiscoverLimit)))
	}
	if scope != nil {
		if err := scope.ReserveMemory(s.rc.MaxDiscoverResponseSize, network.ReservationPriorityHigh); err != nil {
			return nil, rendezvous.Cookie{}, rendezvous.Errorf(rendezvous.StatusUnavailable, "out of resources")
		}
		defer scope.ReleaseMemory(s.rc.MaxDiscoverResponseSize)
	}
	now := s.now()
	page := s.pageBuffer()
	defer s.putPageBuffer(page)
	found, err := s.store.Discover(ctx, (*page)[:0], ns, cookie.Seq, limit, now)
	*page = found
	if err != nil {
		return nil, rendezvous.Cookie{}, s.storeError(pb.Message_DISCOVER, err)
	}
	budget := s.rc.MaxDiscoverResponseSize - responseOverhead
	regs := make([]*pb.Message_Register, 0, len(found))
	// The page's messages, in one allocation.
	items := make([]discovered, len(found))
	for i, r := range found {
		it := &items[i]
		it.ns, it.ttl = r.Namespace, remainingSeconds(r.Expires, now)
		reg := &it.reg
		reg.Ns, reg.SignedPeerRecord, reg.Ttl = &it.ns, r.Record, &it.ttl
		cost := sizeRegistration(reg)
		if cost > budget {
			if len(regs) > 0 || cost <= s.rc.MaxDiscoverResponseSize-responseOverhead {
				break // the next page starts with it
			}
			// It fits in no response (stored under larger limits than
			// today's): pass over it rather than stall every cookie here.
			s.log.Debug("registration larger than a DISCOVER response", "ns", r.Namespace, "peer", r.Peer, "bytes", cost)
			cookie.Seq = r.Seq
			continue
		}
		budget -= cost
		regs = append(regs, reg)
		cookie.Seq = r.Seq
	}
	return regs, cookie, nil
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
