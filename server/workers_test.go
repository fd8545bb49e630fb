package server_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// workerPoint is a point on a memory store with the given stream workers
// and idle time.
func workerPoint(t *testing.T, workers int, idle time.Duration, opts ...server.Option) *point {
	t.Helper()
	rc := unlimited(server.DefaultResources())
	rc.StreamWorkers, rc.StreamWorkerIdle = workers, idle
	return newPoint(t, append([]server.Option{server.WithResources(rc)}, opts...)...)
}

// oneShot sends m on a new stream, closes the stream for writing, as
// clients do after their one request, and returns the answer.
func oneShot(c *peerConn, m *pb.Message) *pb.Message {
	c.t.Helper()
	s := c.open()
	s.send(m)
	if err := s.s.CloseWrite(); err != nil {
		c.t.Fatal(err)
	}
	return s.recv()
}

// discoverUntilHandedOff sends DISCOVERs, one a stream, each answered OK,
// until one was served by a stream worker; at most 200.
func discoverUntilHandedOff(t *testing.T, p *point, c *peerConn) {
	t.Helper()
	before := server.StreamsHandedOff(p.server)
	for range 200 {
		if r := oneShot(c, discoverMsg("ns", 10, nil)).GetDiscoverResponse(); r.GetStatus() != pb.Message_OK {
			t.Fatalf("DISCOVER: %v", r.GetStatus())
		}
		if server.StreamsHandedOff(p.server) > before {
			return
		}
	}
	t.Fatal("200 streams in turn and none was served by a stream worker")
}

func TestStreamWorkersServeLaterStreams(t *testing.T) {
	p := workerPoint(t, 1, time.Minute)
	c := newPeer(t, p)
	c.mustRegister("ns", 7200)
	discoverUntilHandedOff(t, p, c)
	if peers := peersOf(t, oneShot(c, discoverMsg("ns", 10, nil)).GetDiscoverResponse()); len(peers) != 1 || peers[0] != c.host.ID() {
		t.Fatalf("DISCOVER found %v, want the registered peer", peers)
	}
	if n := server.StreamWorkersRunning(p.server); n != 1 {
		t.Fatalf("%d stream workers, want 1 (the limit)", n)
	}
}

func TestStreamWorkersNone(t *testing.T) {
	p := workerPoint(t, 0, time.Minute)
	c := newPeer(t, p)
	for range 20 {
		if r := oneShot(c, registerMsg("ns", c.record(), proto.Uint64(7200))).GetRegisterResponse(); r.GetStatus() != pb.Message_OK {
			t.Fatalf("REGISTER: %v", r.GetStatus())
		}
	}
	if n, h := server.StreamWorkersRunning(p.server), server.StreamsHandedOff(p.server); n != 0 || h != 0 {
		t.Fatalf("StreamWorkers 0: %d workers ran, %d streams handed off", n, h)
	}
}

// A stream that arrives while every worker is busy is served at once, not
// after the busy stream.
func TestBusyStreamWorkersHoldNoStream(t *testing.T) {
	h := testhost.New(t)
	st := &gatedStore{Store: memory.New(), entered: make(chan struct{}), release: make(chan struct{})}
	rc := unlimited(server.DefaultResources())
	rc.StreamWorkers = 1
	srv, err := server.New(h, st, server.WithResources(rc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	p := &point{host: h, server: srv}
	c := newPeer(t, p)

	// Hold a REGISTER in the store on the worker: retry until the held
	// stream is one a worker took.
	var held *stream
	for range 200 {
		discoverUntilHandedOff(t, p, c)
		before := server.StreamsHandedOff(srv)
		s := c.open()
		s.send(registerMsg("ns", c.record(), proto.Uint64(7200)))
		if err := s.s.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		<-st.entered
		if server.StreamsHandedOff(srv) > before {
			held = s
			break
		}
		st.release <- struct{}{}
		if r := s.recv().GetRegisterResponse(); r.GetStatus() != pb.Message_OK {
			t.Fatalf("REGISTER: %v", r.GetStatus())
		}
	}
	if held == nil {
		t.Fatal("no REGISTER was held on the worker")
	}
	for range 5 {
		if r := oneShot(c, discoverMsg("ns", 10, nil)).GetDiscoverResponse(); r.GetStatus() != pb.Message_OK {
			t.Fatalf("DISCOVER while the worker is busy: %v", r.GetStatus())
		}
	}
	if n := server.StreamWorkersRunning(srv); n != 1 {
		t.Fatalf("%d stream workers, want 1 (the limit)", n)
	}
	st.release <- struct{}{}
	if r := held.recv().GetRegisterResponse(); r.GetStatus() != pb.Message_OK {
		t.Fatalf("the held REGISTER: %v", r.GetStatus())
	}
}

func TestStreamWorkersExitWhenIdle(t *testing.T) {
	exited := make(chan struct{}, 16)
	p := workerPoint(t, 4, time.Millisecond)
	server.OnStreamWorkerExit(p.server, func() { exited <- struct{}{} })
	c := newPeer(t, p)
	c.mustRegister("ns", 7200)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("no idle stream worker exited within 10 s")
	}
	// The stream workers still serve, and start again.
	discoverUntilHandedOff(t, p, c)
}

func TestCloseStopsStreamWorkers(t *testing.T) {
	p := workerPoint(t, 4, time.Hour)
	c := newPeer(t, p)
	c.mustRegister("ns", 7200)
	discoverUntilHandedOff(t, p, c)
	if err := p.server.Close(); err != nil {
		t.Fatal(err)
	}
	if n := server.StreamWorkersRunning(p.server); n != 0 {
		t.Fatalf("%d stream workers still run after Close", n)
	}
}

func TestStreamWorkerResourcesValidate(t *testing.T) {
	rc := server.DefaultResources()
	rc.StreamWorkers = -1
	if rc.Validate() == nil {
		t.Error("negative StreamWorkers accepted")
	}
	rc = server.DefaultResources()
	rc.StreamWorkerIdle = 0
	if rc.Validate() == nil {
		t.Error("StreamWorkerIdle 0 accepted with workers")
	}
	rc.StreamWorkers = 0
	if err := rc.Validate(); err != nil {
		t.Errorf("no workers and no idle time: %v", err)
	}
}
