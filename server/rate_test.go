package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// countingStore counts the calls that reach the store.
type countingStore struct {
	store.Store
	calls atomic.Int64
}

func (c *countingStore) Register(ctx context.Context, r store.Registration, l store.Limits, now time.Time) (uint64, error) {
	c.calls.Add(1)
	return c.Store.Register(ctx, r, l, now)
}

func (c *countingStore) Discover(ctx context.Context, dst []store.Registration, ns string, after uint64, limit int, now time.Time) ([]store.Registration, error) {
	c.calls.Add(1)
	return c.Store.Discover(ctx, dst, ns, after, limit, now)
}

func (c *countingStore) Unregister(ctx context.Context, ns string, p peer.ID) error {
	c.calls.Add(1)
	return c.Store.Unregister(ctx, ns, p)
}

// TestRateRefusedFirst: beyond its rate, a source's REGISTER is refused
// E_UNAVAILABLE before its record is looked at and without a store call,
// and so is its DISCOVER; another source is not held.
func TestRateRefusedFirst(t *testing.T) {
	rc := server.DefaultResources()
	rc.RegisterRate, rc.DiscoverRate = ratePer(0.001, 2), ratePer(0.001, 2)
	st := &countingStore{Store: memory.New()}
	t.Cleanup(func() { _ = st.Close() })
	srv, err := server.New(testhost.New(t), st, server.WithResources(rc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	p := &point{server: srv}
	ids := identities(t, 2)
	for range 2 {
		if r := p.registerAs(ids[0], "192.0.2.1", "ns"); r.GetStatus() != pb.Message_OK {
			t.Fatalf("within the burst: %v %q", r.GetStatus(), r.GetStatusText())
		}
		if d := p.ask(ids[0], "192.0.2.1", discoverMsg("ns", 10, nil)).GetDiscoverResponse(); d.GetStatus() != pb.Message_OK {
			t.Fatalf("within the burst: %v %q", d.GetStatus(), d.GetStatusText())
		}
	}
	before := st.calls.Load()
	garbage := registerMsg("ns", []byte("not a record"), proto.Uint64(7200))
	r := p.ask(ids[0], "192.0.2.1", garbage).GetRegisterResponse()
	if r.GetStatus() != pb.Message_E_UNAVAILABLE || r.GetStatusText() != "rate limit: too many REGISTER requests from your address or network; retry later" {
		t.Fatalf("beyond the rate, a bad record: %v %q, want the rate's E_UNAVAILABLE", r.GetStatus(), r.GetStatusText())
	}
	d := p.ask(ids[0], "192.0.2.1", discoverMsg("ns", 10, nil)).GetDiscoverResponse()
	if d.GetStatus() != pb.Message_E_UNAVAILABLE || d.GetStatusText() != "rate limit: too many DISCOVER requests from your address or network; retry later" {
		t.Fatalf("beyond the rate: %v %q", d.GetStatus(), d.GetStatusText())
	}
	if _, status := srv.HandleRequest(context.Background(), server.Request{Message: unregisterMsg("ns"), Peer: ids[0].id}); status != pb.Message_OK {
		t.Fatalf("unregister from another source: %v", status)
	}
	if n := st.calls.Load() - before; n != 1 {
		t.Fatalf("%d store calls, want only the other source's UNREGISTER", n)
	}
	if r := p.registerAs(ids[1], "198.51.100.1", "ns"); r.GetStatus() != pb.Message_OK {
		t.Fatalf("another source: %v %q", r.GetStatus(), r.GetStatusText())
	}
}

// TestRateOfAFlood: one source sending DISCOVERs as fast as it can gets its
// burst and its rate, no more; requests of other sources take at most
// twice as long meanwhile (medians of REGISTERs, alternating quiet and
// flooded phases).
func TestRateOfAFlood(t *testing.T) {
	rc := server.DefaultResources()
	rc.DiscoverRate, rc.DiscoverNetRate = ratePer(200, 50), ratePer(1000, 500)
	rc.RegisterRate, rc.RegisterNetRate = ratePer(1e6, 1e6), ratePer(1e6, 1e6)
	// Every REGISTER of the others verifies its record, as a first
	// registration does: with the record cache, a refresh takes a few
	// microseconds, and the test would weigh the flood against the
	// scheduler's noise rather than against a request's work.
	rc.RecordCacheSize = 0
	p := newPoint(t, server.WithResources(rc))
	ids := identities(t, 65)
	flooder, others := ids[0], ids[1:]

	// The flood alone, for a bounded time.
	const window = time.Second
	ok, sent := 0, 0
	start := time.Now()
	for time.Since(start) < window && sent < 10_000_000 {
		d := p.ask(flooder, "198.51.100.7", discoverMsg("ns", 10, nil)).GetDiscoverResponse()
		sent++
		if d.GetStatus() == pb.Message_OK {
			ok++
		}
	}
	elapsed := time.Since(start).Seconds()
	most := rc.DiscoverRate.Burst + int(rc.DiscoverRate.RPS*elapsed) + 1
	t.Logf("flood: %d sent, %d answered OK in %.2fs (burst %d + %.0f/s allows %d)", sent, ok, elapsed, rc.DiscoverRate.Burst, rc.DiscoverRate.RPS, most)
	if ok < rc.DiscoverRate.Burst || ok > most {
		t.Fatalf("%d answered OK, want between the burst %d and %d", ok, rc.DiscoverRate.Burst, most)
	}

	// Latency of others, quiet and flooded.
	measure := func(n int, phase int) []time.Duration {
		out := make([]time.Duration, 0, n)
		for i := range n {
			j := (phase*n + i) % len(others)
			m := registerMsg(fmt.Sprintf("ns%d", j%8), others[j].rec, proto.Uint64(7200))
			src := fmt.Sprintf("10.%d.%d.1", phase, i%250)
			t0 := time.Now()
			r := p.ask(others[j], src, m).GetRegisterResponse()
			out = append(out, time.Since(t0))
			if r.GetStatus() != pb.Message_OK {
				t.Fatalf("other source: %v %q", r.GetStatus(), r.GetStatusText())
			}
		}
		return out
	}
	var quiet, flooded []time.Duration
	for phase := range 6 {
		if phase%2 == 0 {
			quiet = append(quiet, measure(300, phase)...)
			continue
		}
		stop := make(chan struct{})
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			for {
				select {
				case <-stop:
					return
				default:
				}
				p.ask(flooder, "198.51.100.7", discoverMsg("ns", 10, nil))
			}
		}()
		flooded = append(flooded, measure(300, phase)...)
		close(stop)
		<-stopped
	}
	ratio := float64(median(flooded)) / float64(median(quiet))
	t.Logf("others' REGISTER median: %v quiet, %v during the flood: ratio %.2f", median(quiet), median(flooded), ratio)
	if ratio > 2 {
		t.Fatalf("others' latency rose %.2f times during the flood, want at most 2", ratio)
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
