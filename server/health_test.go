package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// failingStore is a memory store whose writes fail with the error it is
// given until it is given nil.
type failingStore struct {
	store.Store
	err atomic.Pointer[error]
}

func (f *failingStore) fail(err error) { f.err.Store(&err) }

func (f *failingStore) Register(ctx context.Context, r store.Registration, l store.Limits, now time.Time) (uint64, error) {
	if err := f.err.Load(); err != nil && *err != nil {
		return 0, *err
	}
	return f.Store.Register(ctx, r, l, now)
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(substr string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// A full disk under the store: every REGISTER is refused E_UNAVAILABLE,
// the point says it is not healthy, the log gets one line per interval
// (saying how many it held back), the refusals are counted, and all of it
// ends with the first write that succeeds.
func TestStoreFaultIsVisibleAndEnds(t *testing.T) {
	st := &failingStore{Store: memory.New()}
	var logs syncBuffer
	clock := newFakeClock()
	mt := &refusalCounter{}
	h := testhost.New(t)
	srv, err := server.New(h, st, server.WithClock(clock.Now), server.WithMetricsTracer(mt),
		server.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	a := newPeer(t, &point{host: h})

	if err := srv.Healthy(); err != nil {
		t.Fatalf("healthy before any fault: %v", err)
	}
	st.fail(fmt.Errorf("sqlite: %w: database or disk is full (13)", store.ErrUnavailable))
	for range 50 {
		if r := a.register("ns", 7200); r.GetStatus() != pb.Message_E_UNAVAILABLE {
			t.Fatalf("register on a full disk: %v %q, want E_UNAVAILABLE", r.GetStatus(), r.GetStatusText())
		}
	}
	if err := srv.Healthy(); !errors.Is(err, server.ErrWritesFailing) || !strings.Contains(err.Error(), "disk is full") {
		t.Fatalf("Healthy while writes fail: %v, want ErrWritesFailing with the store's error", err)
	}
	if got := len(logs.lines("store unavailable")); got != 1 {
		t.Fatalf("%d log lines for 50 refusals within the interval, want 1", got)
	}
	clock.Advance(server.DefaultFaultLogInterval)
	a.register("ns", 7200)
	if l := logs.lines("store unavailable"); len(l) != 2 || !strings.Contains(l[1], "suppressed=49") {
		t.Fatalf("log lines after the interval: %q, want a second one saying 49 were held back", l)
	}
	if n := mt.count(pb.Message_REGISTER, server.RefusedStore); n != 51 {
		t.Fatalf("%d refusals counted for the store, want 51", n)
	}

	st.fail(nil) // space freed
	if r := a.register("ns", 7200); r.GetStatus() != pb.Message_OK {
		t.Fatalf("register once the disk has room: %v", r.GetStatus())
	}
	if err := srv.Healthy(); err != nil {
		t.Fatalf("Healthy once writes succeed: %v", err)
	}
}

// A refusal on a limit is not a fault of the store.
func TestLimitRefusalsLeaveThePointHealthy(t *testing.T) {
	rc := server.DefaultResources()
	rc.MaxRegistrations, rc.CrowdedPercent = 1, 100
	p := newPoint(t, server.WithResources(rc))
	newPeer(t, p).mustRegister("a", 7200)
	if r := newPeer(t, p).register("b", 7200); r.GetStatus() != pb.Message_E_UNAVAILABLE {
		t.Fatalf("register past the cap: %v", r.GetStatus())
	}
	if err := p.server.Healthy(); err != nil {
		t.Fatalf("Healthy after a refusal on the cap: %v", err)
	}
}

// refusalCounter is a MetricsTracer that counts refusals.
type refusalCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refusalCounter) RequestHandled(pb.Message_MessageType, pb.Message_ResponseStatus, time.Duration) {
}
func (r *refusalCounter) StoreStats(store.Stats) {}
func (r *refusalCounter) RequestRefused(t pb.Message_MessageType, reason server.Refusal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = make(map[string]int)
	}
	r.n[t.String()+"/"+string(reason)]++
}
func (r *refusalCounter) count(t pb.Message_MessageType, reason server.Refusal) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[t.String()+"/"+string(reason)]
}
