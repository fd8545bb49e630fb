package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// gatedStore holds every Register until it is released.
type gatedStore struct {
	*memory.Store
	entered chan struct{}
	release chan struct{}
}

func (g *gatedStore) Register(ctx context.Context, reg store.Registration, limits store.Limits, now time.Time) (uint64, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.Store.Register(ctx, reg, limits, now)
}

func TestCloseFinishesRequestsInFlight(t *testing.T) {
	h := testhost.New(t)
	st := &gatedStore{Store: memory.New(), entered: make(chan struct{}), release: make(chan struct{})}
	srv, err := server.New(h, st)
	if err != nil {
		t.Fatal(err)
	}
	a := newPeer(t, &point{host: h})
	s := a.open()
	s.send(registerMsg("ns", a.record(), proto.Uint64(7200)))
	<-st.entered // the request is in the store

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a request was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(st.release)
	if r := s.recv().GetRegisterResponse(); r.GetStatus() != pb.Message_OK {
		t.Fatalf("the request in flight got %v, want OK", r.GetStatus())
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the request finished")
	}
	regs, err := st.Discover(context.Background(), nil, "ns", 0, 10, time.Now())
	if err != nil || len(regs) != 1 {
		t.Fatalf("store holds %d registrations (%v), want the one acknowledged", len(regs), err)
	}
}
