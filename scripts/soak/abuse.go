package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-msgio"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/rawconn"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// abuseConfig sizes the abusers. Each plays its own loopback sources:
// 127.20.0.x fill, 127.21.0.1 rate, 127.22.0.x idle streams, 127.23.0.x
// trickling, 127.24.0.x unnegotiated streams, 127.25.0.x malformed frames.
type abuseConfig struct {
	fillKeys, fillAddrs, fillWorkers, fillNamespaces int
	rateStreams                                      int
	idleAddrs, idlePeers, idleStreams                int
	trickleAddrs, tricklePeers, trickleStreams       int
	trickleEvery                                     time.Duration
	unnegAddrs, unnegPeers, unnegStreams             int
	malformedAddrs                                   int
	malformedRate                                    float64
}

// Bounds of every abuser's loops, besides the end of the abuse phase.
const (
	maxDialsPerPeer   = 1000
	maxStreamsPerSlot = 100_000
	maxRequestsPerRun = 100_000_000
)

// abuser is one kind of abuse: its name, its sources and what it counted.
type abuser struct {
	name, sources string
	tally         *tally
	run           func(ctx context.Context, point *peer.AddrInfo, t *tally)
}

// abusers returns the six kinds of abuse sized by cfg.
func abusers(cfg abuseConfig) ([]abuser, error) {
	ids, err := fillIdentities(cfg.fillKeys, cfg.fillAddrs)
	if err != nil {
		return nil, err
	}
	return []abuser{
		{"fill", fmt.Sprintf("%d peer IDs from %s", cfg.fillKeys, ipRange(20, cfg.fillAddrs)), newTally(), func(ctx context.Context, pt *peer.AddrInfo, t *tally) {
			fill(ctx, pt, t, ids, cfg.fillAddrs, cfg.fillWorkers, cfg.fillNamespaces)
		}},
		{"rate", fmt.Sprintf("1 peer from %s, %d streams", ipRange(21, 1), cfg.rateStreams), newTally(), func(ctx context.Context, pt *peer.AddrInfo, t *tally) {
			flood(ctx, pt, t, sourceIP(21, 0), cfg.rateStreams)
		}},
		{"idle streams", fmt.Sprintf("%d peers from each of %s, %d streams each", cfg.idlePeers, ipRange(22, cfg.idleAddrs), cfg.idleStreams), newTally(), func(ctx context.Context, pt *peer.AddrInfo, t *tally) {
			holdStreams(ctx, pt, t, sourceIPs(22, cfg.idleAddrs), cfg.idlePeers, cfg.idleStreams, 2*time.Second, idleStream)
		}},
		{"trickling", fmt.Sprintf("%d peers from each of %s, %d streams each, a byte every %v after a 64 KiB length prefix", cfg.tricklePeers, ipRange(23, cfg.trickleAddrs), cfg.trickleStreams, cfg.trickleEvery), newTally(), func(ctx context.Context, pt *peer.AddrInfo, t *tally) {
			holdStreams(ctx, pt, t, sourceIPs(23, cfg.trickleAddrs), cfg.tricklePeers, cfg.trickleStreams, time.Second, trickleStream(cfg.trickleEvery))
		}},
		{"unnegotiated", fmt.Sprintf("%d peers from each of %s, %d streams each", cfg.unnegPeers, ipRange(24, cfg.unnegAddrs), cfg.unnegStreams), newTally(), func(ctx context.Context, pt *peer.AddrInfo, t *tally) {
			holdStreams(ctx, pt, t, sourceIPs(24, cfg.unnegAddrs), cfg.unnegPeers, cfg.unnegStreams, time.Second, unnegotiatedStream)
		}},
		{"malformed", fmt.Sprintf("1 peer from each of %s, %.0f streams/s in all", ipRange(25, cfg.malformedAddrs), cfg.malformedRate), newTally(), func(ctx context.Context, pt *peer.AddrInfo, t *tally) {
			malformed(ctx, pt, t, sourceIPs(25, cfg.malformedAddrs), cfg.malformedRate)
		}},
	}, nil
}

// sourceIP is the i-th address of an abuser's sources, 127.b.0.(i+1).
func sourceIP(b byte, i int) net.IP { return net.IPv4(127, b, byte(i/250), byte(i%250+1)) }

func sourceIPs(b byte, n int) []net.IP {
	ips := make([]net.IP, n)
	for i := range ips {
		ips[i] = sourceIP(b, i)
	}
	return ips
}

func ipRange(b byte, n int) string {
	if n == 1 {
		return sourceIP(b, 0).String()
	}
	return fmt.Sprintf("%s..%s", sourceIP(b, 0), sourceIP(b, n-1))
}

// tally counts what an abuser did, by what it came to.
type tally struct {
	mu sync.Mutex
	m  map[string]int64
}

func newTally() *tally { return &tally{m: make(map[string]int64)} }

func (t *tally) add(what string) {
	t.mu.Lock()
	t.m[what]++
	t.mu.Unlock()
}

// lines returns the counts, largest first.
func (t *tally) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if t.m[keys[i]] != t.m[keys[j]] {
			return t.m[keys[i]] > t.m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%d %s", t.m[k], k)
	}
	return out
}

// identity is a peer the fill abuser plays: its key, its address and its
// signed record, made once.
type identity struct {
	key    crypto.PrivKey
	ip     net.IP
	record []byte
}

// fillIdentities makes n peers spread over the first addrs addresses of
// 127.20.0.0/24, each with a signed record of its address.
func fillIdentities(n, addrs int) ([]identity, error) {
	ids := make([]identity, n)
	for i := range ids {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, err
		}
		ip := sourceIP(20, i%addrs)
		a, err := ma.NewMultiaddr("/ip4/" + ip.String() + "/tcp/4001")
		if err != nil {
			return nil, err
		}
		rec, err := rendezvous.SealPeerRecord(key, []ma.Multiaddr{a}, 1)
		if err != nil {
			return nil, err
		}
		ids[i] = identity{key: key, ip: ip, record: rec}
	}
	return ids, nil
}

// fillTTL is what the fill abuser registers for: the longest a point
// grants by default, so that its registrations stay.
const fillTTL = 72 * time.Hour

// fill registers ids in new namespaces as fast as the point lets them:
// workers connections at once from each address, each a peer that
// registers in perVisit new namespaces (retrying each as soon as a rate
// refusal lets it) and goes; then the next peer, round after round.
func fill(ctx context.Context, point *peer.AddrInfo, t *tally, ids []identity, addrs, workers, perVisit int) {
	var wg sync.WaitGroup
	for a := range addrs {
		for w := range workers {
			var mine []identity
			for i := range ids {
				if i%addrs == a && i/addrs%workers == w {
					mine = append(mine, ids[i])
				}
			}
			if len(mine) == 0 {
				continue
			}
			wg.Go(func() {
				for round := 0; ctx.Err() == nil && round < maxDialsPerPeer; round++ {
					for _, id := range mine {
						if ctx.Err() != nil {
							return
						}
						fillVisit(ctx, point, t, id, round, perVisit)
					}
				}
			})
		}
	}
	wg.Wait()
}

func fillVisit(ctx context.Context, point *peer.AddrInfo, t *tally, id identity, round, perVisit int) {
	c, err := rawconn.Dial(ctx, point, id.ip, id.key, dialTimeout)
	if err != nil {
		if ctx.Err() == nil {
			t.add("connections refused")
			sleep(ctx, 500*time.Millisecond)
		}
		return
	}
	defer c.Close()
	t.add("connections")
	s, err := openRendezvous(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			t.add("streams refused")
		}
		return
	}
	defer s.Close()
	for j := range perVisit {
		ns := fmt.Sprintf("fill-%d", round*perVisit+j)
		for try := 0; try < 1000; try++ {
			resp, err := roundTrip(s, registerMsg(ns, id.record, fillTTL))
			if ctx.Err() != nil {
				return
			}
			t.add("REGISTER " + outcome(resp, err))
			if err != nil {
				return
			}
			if resp.GetRegisterResponse().GetStatus() != rendezvous.StatusUnavailable {
				break
			}
			// Refused by a rate: try again as soon as a token may be back.
			if !sleep(ctx, 50*time.Millisecond) {
				return
			}
		}
	}
}

// flood sends DISCOVERs from one peer at ip, back to back on streams
// streams at once, each answer read before the next request.
func flood(ctx context.Context, point *peer.AddrInfo, t *tally, ip net.IP, streams int) {
	for dials := 0; ctx.Err() == nil && dials < maxDialsPerPeer; dials++ {
		c, err := rawconn.Dial(ctx, point, ip, nil, dialTimeout)
		if err != nil {
			if ctx.Err() == nil {
				t.add("connections refused")
				sleep(ctx, time.Second)
			}
			continue
		}
		t.add("connections")
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		var wg sync.WaitGroup
		for range streams {
			wg.Go(func() {
				for n := 0; n < maxStreamsPerSlot && ctx.Err() == nil && !c.IsClosed(); n++ {
					s, err := openRendezvous(ctx, c)
					if err != nil {
						if ctx.Err() == nil {
							t.add("streams refused")
							sleep(ctx, 100*time.Millisecond)
						}
						continue
					}
					for range maxRequestsPerRun {
						resp, err := roundTrip(s, discoverMsg("fill-0", 1000))
						if ctx.Err() != nil {
							break
						}
						t.add("DISCOVER " + outcome(resp, err))
						if err != nil {
							break
						}
					}
					_ = s.Reset()
				}
			})
		}
		wg.Wait()
		stop()
		_ = c.Close()
	}
}

// holdStreams keeps peers connections from each of ips, each a new peer
// holding slots streams: a slot opens a stream with run, which returns
// when the stream ends, and opens the next pause later, until ctx is done.
// A lost connection is dialed again.
func holdStreams(ctx context.Context, point *peer.AddrInfo, t *tally, ips []net.IP, peers, slots int, pause time.Duration,
	run func(context.Context, transport.CapableConn) error) {
	var wg sync.WaitGroup
	for _, ip := range ips {
		for range peers {
			wg.Go(func() {
				for dials := 0; ctx.Err() == nil && dials < maxDialsPerPeer; dials++ {
					c, err := rawconn.Dial(ctx, point, ip, nil, dialTimeout)
					if err != nil {
						if ctx.Err() == nil {
							t.add("connections refused")
							sleep(ctx, 2*time.Second)
						}
						continue
					}
					t.add("connections")
					stop := context.AfterFunc(ctx, func() { _ = c.Close() })
					var slotsWG sync.WaitGroup
					for range slots {
						slotsWG.Go(func() { holdSlot(ctx, c, t, pause, run) })
					}
					slotsWG.Wait()
					stop()
					_ = c.Close()
					if ctx.Err() == nil {
						t.add("connections closed by the point")
						sleep(ctx, pause)
					}
				}
			})
		}
	}
	wg.Wait()
}

func holdSlot(ctx context.Context, c transport.CapableConn, t *tally, pause time.Duration, run func(context.Context, transport.CapableConn) error) {
	for n := 0; n < maxStreamsPerSlot && ctx.Err() == nil && !c.IsClosed(); n++ {
		start := time.Now()
		err := run(ctx, c)
		if ctx.Err() != nil {
			if time.Since(start) >= time.Second {
				t.add("streams held until the abuse stopped")
			}
			return
		}
		t.add(fmt.Sprintf("streams %s after %s", ended(err), lifetime(time.Since(start))))
		sleep(ctx, pause)
	}
}

// lifetime buckets how long a stream was held.
func lifetime(d time.Duration) string {
	for _, b := range []time.Duration{time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second, time.Minute, 4 * time.Minute} {
		if d < b {
			return "< " + b.String()
		}
	}
	return ">= 4m"
}

// idleStream opens a rendezvous stream and sends nothing on it.
func idleStream(ctx context.Context, c transport.CapableConn) error {
	s, err := openRendezvous(ctx, c)
	if err != nil {
		return err
	}
	defer func() { _ = s.Reset() }()
	_, err = io.Copy(io.Discard, s)
	return err
}

// trickleStream opens a rendezvous stream and sends the length prefix of a
// request of 64 KiB (the most a point reads by default), then one byte
// every every.
func trickleStream(every time.Duration) func(context.Context, transport.CapableConn) error {
	return func(ctx context.Context, c transport.CapableConn) error {
		s, err := openRendezvous(ctx, c)
		if err != nil {
			return err
		}
		defer func() { _ = s.Reset() }()
		if _, err := s.Write(binary.AppendUvarint(nil, 1<<16)); err != nil {
			return err
		}
		for range 1 << 16 {
			if !sleep(ctx, every) {
				return nil
			}
			if _, err := s.Write([]byte{0x0a}); err != nil {
				return err
			}
		}
		return nil
	}
}

// unnegotiatedStream opens a stream, sends the multistream header and no
// protocol, and waits.
func unnegotiatedStream(ctx context.Context, c transport.CapableConn) error {
	s, err := c.OpenStream(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = s.Reset() }()
	if err := msgio.NewVarintWriter(s).WriteMsg([]byte(multistreamID + "\n")); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, s)
	return err
}

// malformedFrames are what the malformed abuser sends, one on each stream.
var malformedFrames = []struct {
	name  string
	frame func() []byte
}{
	{"random bytes", func() []byte { return randomBytes(1 + int(randomBytes(1)[0])) }},
	{"16 MiB length prefix", func() []byte { return append(binary.AppendUvarint(nil, 1<<24), randomBytes(64)...) }},
	{"invalid protobuf", func() []byte {
		// Field 1 of wire type 7, which does not exist.
		body := append([]byte{0x0f}, randomBytes(99)...)
		return append(binary.AppendUvarint(nil, uint64(len(body))), body...)
	}},
	{"REGISTER with a garbage record", func() []byte {
		b, _ := proto.Marshal(registerMsg("soak-junk", randomBytes(300), 2*time.Hour))
		return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
	}},
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// malformed sends malformed frames from one peer at each of ips, rate
// streams a second in all, each frame on a new rendezvous stream closed for
// writing after it, and counts how the point answered.
func malformed(ctx context.Context, point *peer.AddrInfo, t *tally, ips []net.IP, rate float64) {
	const workers = 4 // per address, so that a slow answer does not stall the rest
	interval := time.Duration(float64(time.Second) * float64(len(ips)) / rate)
	var wg sync.WaitGroup
	for _, ip := range ips {
		wg.Go(func() {
			for dials := 0; ctx.Err() == nil && dials < maxDialsPerPeer; dials++ {
				c, err := rawconn.Dial(ctx, point, ip, nil, dialTimeout)
				if err != nil {
					if ctx.Err() == nil {
						t.add("connections refused")
						sleep(ctx, time.Second)
					}
					continue
				}
				t.add("connections")
				tick := time.NewTicker(interval)
				var workersWG sync.WaitGroup
				var next sync.Mutex
				n := 0
				for range workers {
					workersWG.Go(func() {
						for ctx.Err() == nil && !c.IsClosed() {
							select {
							case <-ctx.Done():
								return
							case <-tick.C:
							}
							next.Lock()
							kind := malformedFrames[n%len(malformedFrames)]
							n++
							next.Unlock()
							t.add(kind.name + ": " + sendMalformed(ctx, c, kind.frame()))
						}
					})
				}
				workersWG.Wait()
				tick.Stop()
				_ = c.Close()
			}
		})
	}
	wg.Wait()
}

// sendMalformed sends frame on a new rendezvous stream and says what the
// point did.
func sendMalformed(ctx context.Context, c transport.CapableConn, frame []byte) string {
	s, err := openRendezvous(ctx, c)
	if err != nil {
		return "stream refused: " + ended(err)
	}
	defer func() { _ = s.Reset() }()
	_ = s.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := s.Write(frame); err != nil {
		return "writing: " + ended(err)
	}
	_ = s.CloseWrite()
	r := msgio.NewVarintReaderSize(s, 1<<20)
	b, err := r.ReadMsg()
	if err != nil {
		return ended(err)
	}
	var resp pb.Message
	if err := proto.Unmarshal(b, &resp); err != nil {
		return "answered garbage"
	}
	return "answered " + outcome(&resp, nil)
}
