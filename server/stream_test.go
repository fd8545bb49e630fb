package server_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
)

func mustMA(s string) ma.Multiaddr { return ma.StringCast(s) }

func TestUnregister(t *testing.T) {
	p := newPoint(t)
	a, b := newPeer(t, p), newPeer(t, p)
	a.mustRegister("ns", 7200)
	b.mustRegister("ns", 7200)
	s := a.open()
	// No answer to UNREGISTER: the next message read is the DISCOVER answer.
	s.send(unregisterMsg("ns"))
	s.send(unregisterMsg("never-registered"))
	s.send(discoverMsg("ns", 0, nil))
	m := s.recv()
	if m.GetType() != pb.Message_DISCOVER_RESPONSE {
		t.Fatalf("first answer is a %v, want the DISCOVER_RESPONSE", m.GetType())
	}
	if ids := peersOf(t, m.GetDiscoverResponse()); len(ids) != 1 || ids[0] != b.host.ID() {
		t.Fatalf("after unregister: %v, want only %s", ids, b.host.ID())
	}
	// Closing our side shows there was nothing else to read.
	_ = s.s.CloseWrite()
	if _, err := s.s.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last answer: %v, want EOF", err)
	}
}

func TestPipelinedRequests(t *testing.T) {
	p := newPoint(t)
	a := newPeer(t, p)
	s := a.open()
	rec := a.record()
	s.send(registerMsg("x", rec, proto.Uint64(7200)))
	s.send(discoverMsg("x", 0, nil))
	s.send(registerMsg("", rec, proto.Uint64(7200)))
	s.send(discoverMsg("y", 0, nil))
	s.send(registerMsg("y", rec, proto.Uint64(1)))
	want := []struct {
		typ    pb.Message_MessageType
		status pb.Message_ResponseStatus
	}{
		{pb.Message_REGISTER_RESPONSE, pb.Message_OK},
		{pb.Message_DISCOVER_RESPONSE, pb.Message_OK},
		{pb.Message_REGISTER_RESPONSE, pb.Message_E_INVALID_NAMESPACE},
		{pb.Message_DISCOVER_RESPONSE, pb.Message_OK},
		{pb.Message_REGISTER_RESPONSE, pb.Message_E_INVALID_TTL},
	}
	for i, w := range want {
		m := s.recv()
		status := m.GetRegisterResponse().GetStatus()
		if m.GetType() == pb.Message_DISCOVER_RESPONSE {
			status = m.GetDiscoverResponse().GetStatus()
		}
		if m.GetType() != w.typ || status != w.status {
			t.Fatalf("answer %d: %v %v, want %v %v", i, m.GetType(), status, w.typ, w.status)
		}
	}
}

func TestOversizedRequest(t *testing.T) {
	rc := server.DefaultResources()
	p := newPoint(t, server.WithResources(rc))
	a := newPeer(t, p)
	s := a.open()
	big := registerMsg("ns", make([]byte, rc.MaxRequestSize), proto.Uint64(7200))
	_ = s.wr.WriteMsg(big)
	if _, err := s.s.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("reading after an oversized request: %v, want the stream reset", err)
	}
	// Nothing stored, and the point still serves.
	if r := a.discover("ns", 0, nil); r.GetStatus() != pb.Message_OK || len(r.GetRegistrations()) != 0 {
		t.Fatalf("after the oversized request: %v", r)
	}
	a.mustRegister("ns", 7200)
}

func TestUnexpectedMessageResetsStream(t *testing.T) {
	p := newPoint(t)
	a := newPeer(t, p)
	s := a.open()
	s.send(&pb.Message{Type: pb.Message_DISCOVER_RESPONSE.Enum()})
	if _, err := s.s.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("after a response sent as a request: %v, want the stream reset", err)
	}
}

func TestCanvasProtocolAlias(t *testing.T) {
	p := newPoint(t, server.WithProtocols(rendezvous.ProtocolID, rendezvous.CanvasProtocolID))
	a := newPeer(t, p)
	a.proto = rendezvous.CanvasProtocolID
	a.mustRegister("ns", 7200)
	a.proto = rendezvous.ProtocolID
	if n := len(a.discover("ns", 0, nil).GetRegistrations()); n != 1 {
		t.Fatalf("%d registrations through the spec ID, want 1", n)
	}
	plain := newPoint(t)
	b := newPeer(t, plain)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !protocolRefused(ctx, b, plain, rendezvous.CanvasProtocolID) {
		t.Fatal("the canvas protocol ID is served without the option")
	}
}

func TestCloseUnmounts(t *testing.T) {
	p := newPoint(t)
	a := newPeer(t, p)
	idle := a.open()
	idle.send(discoverMsg("ns", 0, nil))
	idle.recv()
	if err := p.server.Close(); err != nil {
		t.Fatal(err)
	}
	// The idle stream is closed, not left hanging.
	if _, err := idle.s.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle stream still open after Close")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !protocolRefused(ctx, a, p, rendezvous.ProtocolID) {
		t.Fatal("protocol still served after Close")
	}
}

func TestInvalidResources(t *testing.T) {
	h := testhost.New(t)
	for name, mutate := range map[string]func(*server.Resources){
		"min above max":          func(r *server.Resources) { r.MinTTL, r.MaxTTL = 2*time.Hour, time.Hour },
		"default outside":        func(r *server.Resources) { r.DefaultTTL = time.Minute },
		"response below record":  func(r *server.Resources) { r.MaxDiscoverResponseSize = r.MaxRecordSize },
		"no registrations":       func(r *server.Resources) { r.MaxRegistrations = 0 },
		"default limit over max": func(r *server.Resources) { r.DefaultDiscoverLimit = r.MaxDiscoverLimit + 1 },
	} {
		rc := server.DefaultResources()
		mutate(&rc)
		if _, err := server.New(h, nil, server.WithResources(rc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// protocolRefused reports whether p refuses a DISCOVER on protocol id.
// Stream negotiation may be lazy, so the refusal can show only on reading.
func protocolRefused(ctx context.Context, c *peerConn, p *point, id protocol.ID) bool {
	s, err := c.host.NewStream(ctx, p.host.ID(), id)
	if err != nil {
		return true
	}
	defer s.Reset()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if err := pbio.NewDelimitedWriter(s).WriteMsg(discoverMsg("ns", 0, nil)); err != nil {
		return true
	}
	var m pb.Message
	return pbio.NewDelimitedReader(s, 1<<20).ReadMsg(&m) != nil
}
