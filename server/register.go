package server

import (
	"context"
	"net/netip"
	"time"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/store"
)

func (s *Server) handleRegister(ctx context.Context, r Request, req *pb.Message_Register) (*pb.Message, rendezvous.Status) {
	ttl, err := s.register(ctx, r, req)
	if err != nil {
		return registerRefusal(err), rendezvous.StatusOf(err)
	}
	return newRegisterAnswer(rendezvous.StatusOK, "", ttl), rendezvous.StatusOK
}

// registerRefusal is the answer to a REGISTER refused with err.
func registerRefusal(err error) *pb.Message {
	return newRegisterAnswer(rendezvous.StatusOf(err), errorText(err), 0)
}

func (s *Server) register(ctx context.Context, r Request, req *pb.Message_Register) (time.Duration, error) {
	remote := r.Peer
	ns := req.GetNs()
	if err := rendezvous.ValidateNamespace(ns); err != nil {
		return 0, err
	}
	ttl, err := s.ttl.Resolve(req.GetTtl())
	if err != nil {
		return 0, err
	}
	record, err := s.records.verify(req.GetSignedPeerRecord(), remote, s.rc.MaxRecordSize)
	if err != nil {
		return 0, err
	}
	if s.acl != nil && !s.acl.AllowRegister(remote, ns) {
		s.refused(pb.Message_REGISTER, RefusedACL)
		return 0, rendezvous.Errorf(rendezvous.StatusNotAuthorized, "not allowed to register in this namespace")
	}
	now := s.now()
	reg := store.Registration{
		Namespace: ns,
		Peer:      remote,
		Record:    record,
		Expires:   now.Add(ttl),
		Source:    r.Source,
	}
	// A trusted source's registrations count in no quota, neither its
	// own nor that of the untrusted peers of its network.
	trusted := s.allow.trusts(remote, r.Source)
	if trusted {
		reg.Source = netip.Addr{}
	}
	_, err = s.store.Register(ctx, reg, s.rc.storeLimits(trusted), now)
	s.wrote(err)
	if err != nil {
		return 0, s.storeError(pb.Message_REGISTER, err)
	}
	return ttl, nil
}

// errorText is the text a peer is told for err: the text of an
// *rendezvous.Error, nothing of any other.
func errorText(err error) string {
	if e, ok := err.(*rendezvous.Error); ok {
		return e.Text
	}
	return ""
}
