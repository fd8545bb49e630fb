package server

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// handleUnregister removes the registration of remote in the namespace; the
// protocol answers nothing. It returns the status it would have answered.
func (s *Server) handleUnregister(ctx context.Context, remote peer.ID, req *pb.Message_Unregister) rendezvous.Status {
	ns := req.GetNs()
	if err := rendezvous.ValidateNamespace(ns); err != nil {
		return rendezvous.StatusOf(err)
	}
	err := s.store.Unregister(ctx, ns, remote)
	s.wrote(err)
	if err != nil {
		return s.storeError(pb.Message_UNREGISTER, err).Status
	}
	return rendezvous.StatusOK
}
