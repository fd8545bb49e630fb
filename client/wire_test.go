package client_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// recordingPoint is a scripted point that keeps every DISCOVER it reads.
type recordingPoint struct {
	*scriptedPoint
	mu   sync.Mutex
	seen []*pb.Message_Discover
}

func newRecordingPoint(t *testing.T, answer func(n int, d *pb.Message_Discover) *pb.Message) *recordingPoint {
	rp := &recordingPoint{}
	rp.scriptedPoint = newScriptedPoint(t, func(n int, req *pb.Message) *pb.Message {
		rp.mu.Lock()
		rp.seen = append(rp.seen, req.GetDiscover())
		rp.mu.Unlock()
		return answer(n, req.GetDiscover())
	})
	return rp
}

func (rp *recordingPoint) discovers() []*pb.Message_Discover {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return slices.Clone(rp.seen)
}

// A DISCOVER is written as every implementation reads it: no cookie field
// on a first page (nim-libp2p and the Waku point refuse an empty one), an
// explicit nonzero limit (nim-libp2p returns nothing for 0), no ns field
// for every namespace (an empty one takes a nim-libp2p 1.7 point down),
// and the cookie of the last page on the next.
func TestDiscoverWritesWhatEveryPointReads(t *testing.T) {
	regs := foreignRegs(t, "ns", 2)
	for _, tc := range []struct {
		name   string
		ns     string
		limit  int
		wantNS *string
		want   uint64
	}{
		{"one namespace, no limit", "ns", 0, ptr("ns"), client.DefaultDiscoverLimit},
		{"one namespace, a limit", "ns", 7, ptr("ns"), 7},
		{"every namespace", "", 0, nil, client.DefaultDiscoverLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := newRecordingPoint(t, func(n int, _ *pb.Message_Discover) *pb.Message {
				if n == 0 {
					return discoverResponse(pb.Message_OK, []byte("cookie-1"), regs[0])
				}
				return discoverResponse(pb.Message_OK, []byte("cookie-2"), regs[1])
			})
			c, _ := newClient(t, client.WithPoints(info(rp.Host)), client.WithMaxPages(2))
			found, _, err := c.Discover(ctxFor(t, 10*time.Second), tc.ns, tc.limit)
			if err != nil || len(found) != 2 {
				t.Fatalf("Discover: %d registrations, %v; want 2", len(found), err)
			}
			seen := rp.discovers()
			if len(seen) != 2 {
				t.Fatalf("point read %d DISCOVERs, want 2", len(seen))
			}
			for i, d := range seen {
				if (d.Ns == nil) != (tc.wantNS == nil) || (d.Ns != nil && *d.Ns != *tc.wantNS) {
					t.Errorf("DISCOVER %d: ns %v, want %v", i, d.Ns, tc.wantNS)
				}
				if d.Limit == nil || *d.Limit != tc.want {
					t.Errorf("DISCOVER %d: limit %v, want %d", i, d.Limit, tc.want)
				}
			}
			if seen[0].Cookie != nil {
				t.Errorf("first DISCOVER carries a cookie field (%q); a nim or Waku point refuses it", seen[0].Cookie)
			}
			if string(seen[1].Cookie) != "cookie-1" {
				t.Errorf("second DISCOVER: cookie %q, want the first page's", seen[1].Cookie)
			}
		})
	}
}

// A point that sends all it is asked for, in an answer larger than the
// client reads, is asked again for half as many until the answer fits.
func TestDiscoverHalvesALimitWhoseAnswerIsTooLarge(t *testing.T) {
	regs := foreignRegs(t, "ns", 1)
	size := len(regs[0].GetSignedPeerRecord()) + 16
	rp := newRecordingPoint(t, func(_ int, d *pb.Message_Discover) *pb.Message {
		page := make([]*pb.Message_Register, d.GetLimit())
		for i := range page {
			page[i] = regs[0]
		}
		return discoverResponse(pb.Message_OK, []byte("end"), page...)
	})
	c, _ := newClient(t, client.WithPoints(info(rp.Host)), client.WithMaxResponseSize(300*size))
	found, _, err := c.Discover(ctxFor(t, 10*time.Second), "ns", 0)
	if err != nil || len(found) != 1 {
		t.Fatalf("Discover: %d registrations, %v; want the one peer", len(found), err)
	}
	var limits []uint64
	for _, d := range rp.discovers() {
		limits = append(limits, d.GetLimit())
	}
	// Then the next page, with the cookie, asks for what fitted.
	if want := []uint64{1000, 500, 250, 250}; !slices.Equal(limits, want) {
		t.Fatalf("limits asked %v, want %v", limits, want)
	}
}

func ptr(s string) *string { return &s }
