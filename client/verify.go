package client

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// minRecordsPerVerifier is the fewest records worth a goroutine of their
// own: verifying one signed envelope costs tens of microseconds, starting a
// goroutine about one.
const minRecordsPerVerifier = 4

// openRegistrations verifies the signed peer records of a DISCOVER page
// from point, asked for ns ("" for every namespace), and returns the
// registrations whose record is genuine, in the order of the page. A forged
// or malformed record is dropped: a point must not make us trust it. So is
// a registration in another namespace than the one asked.
//
// Verification is the CPU cost of a page (a signature check per record), so
// it runs on at most workers goroutines at once, each taking the next
// record not yet taken; workers <= 0 means runtime.GOMAXPROCS(0).
func openRegistrations(point peer.ID, ns string, page []*pb.Message_Register, workers int) []Registration {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(page)/minRecordsPerVerifier)
	regs := make([]Registration, len(page))
	ok := make([]bool, len(page))
	if workers <= 1 {
		for i, reg := range page {
			regs[i], ok[i] = openRegistration(point, ns, reg)
		}
	} else {
		var (
			next atomic.Int64
			wg   sync.WaitGroup
		)
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= len(page) {
						return
					}
					regs[i], ok[i] = openRegistration(point, ns, page[i])
				}
			})
		}
		wg.Wait()
	}
	kept := regs[:0]
	for i := range regs {
		if ok[i] {
			kept = append(kept, regs[i])
		}
	}
	clear(regs[len(kept):]) // no stale records kept alive by the backing array
	return kept
}

// openRegistration verifies one registration of a DISCOVER page and reports
// whether to keep it.
func openRegistration(point peer.ID, ns string, reg *pb.Message_Register) (Registration, bool) {
	regNS := reg.GetNs()
	if regNS == "" {
		regNS = ns
	}
	if ns != "" && regNS != ns {
		return Registration{}, false
	}
	rec, _, err := rendezvous.OpenSignedPeerRecord(reg.GetSignedPeerRecord())
	if err != nil {
		return Registration{}, false // a point must not make us trust a forged record
	}
	// Absent means the protocol's default; 0 means under a second is left
	// (nim-libp2p truncates the remaining TTL to whole seconds).
	ttl := rendezvous.DefaultTTL
	if reg.Ttl != nil {
		ttl = time.Duration(reg.GetTtl()) * time.Second
	}
	return Registration{
		Namespace: regNS,
		Peer:      peer.AddrInfo{ID: rec.PeerID, Addrs: rec.Addrs},
		Seq:       rec.Seq,
		TTL:       min(ttl, rendezvous.DefaultMaxTTL),
		Record:    reg.GetSignedPeerRecord(),
		Point:     point,
	}, true
}
