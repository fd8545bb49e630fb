// Command fillpoint fills a running rendezvous point with registrations
// over libp2p, as peers would: PEERS client hosts, each its own peer with
// its own signed record, register in NAMESPACES namespaces each with
// REGISTERs on one stream (one at a time, every answer read and checked),
// CONNS peers at once. scripts/list-big-point.sh uses it to give a point
// 10^6 registrations (1000 peers × 1000 namespaces, the per-peer cap).
//
//	go run ./internal/fillpoint --point /ip4/127.0.0.1/tcp/4457/p2p/12D3KooW... --peers 1000 --namespaces 1000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// config is what fillpoint is told on its command line.
type config struct {
	point      peer.AddrInfo
	peers      int
	namespaces int
	conns      int
	ttl        time.Duration
	perPeer    time.Duration // bounds one peer's registrations
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fillpoint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg     config
		point   string
		timeout time.Duration
	)
	fs.StringVar(&point, "point", "", "multiaddr of the point, ending in /p2p/<peer id> (required)")
	fs.IntVar(&cfg.peers, "peers", 1000, "peers to register, each in every namespace")
	fs.IntVar(&cfg.namespaces, "namespaces", 1000, "namespaces each peer registers in (the point's per-peer cap is 1000 by default)")
	fs.IntVar(&cfg.conns, "conns", 32, "peers registering at once, each on its own connection (serve accepts 64 per IP by default)")
	fs.DurationVar(&cfg.ttl, "ttl", 72*time.Hour, "TTL asked for")
	fs.DurationVar(&cfg.perPeer, "peer-timeout", 5*time.Minute, "time allowed for one peer's registrations")
	fs.DurationVar(&timeout, "timeout", 30*time.Minute, "time allowed for the whole fill")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	info, err := peer.AddrInfoFromString(point)
	if err != nil {
		fmt.Fprintf(stderr, "fillpoint: --point %q: %v\n", point, err)
		return 2
	}
	if cfg.peers < 1 || cfg.namespaces < 1 || cfg.conns < 1 || cfg.ttl < time.Second {
		fmt.Fprintln(stderr, "fillpoint: --peers, --namespaces and --conns must be positive, --ttl at least 1s")
		return 2
	}
	cfg.point = *info
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	n, err := fill(ctx, cfg, func(done int64) {
		el := time.Since(start)
		fmt.Fprintf(stderr, "fillpoint: %d registrations, %s, %.0f/s\n", done, el.Round(time.Second), float64(done)/el.Seconds())
	})
	el := time.Since(start)
	fmt.Fprintf(stdout, "registered %d (%d peers × %d namespaces) in %s: %.0f registrations/s\n",
		n, cfg.peers, cfg.namespaces, el.Round(time.Millisecond), float64(n)/el.Seconds())
	if err != nil {
		fmt.Fprintf(stderr, "fillpoint: %v\n", err)
		return 1
	}
	return 0
}

// fill registers every peer in every namespace and returns the
// registrations granted. It stops at the first failure. progress is called
// every 5 seconds.
func fill(ctx context.Context, cfg config, progress func(done int64)) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next, done atomic.Int64
		errOnce    sync.Once
		firstErr   error
		wg         sync.WaitGroup
	)
	for range min(cfg.conns, cfg.peers) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.peers {
					return
				}
				if err := registerPeer(ctx, cfg, i, &done); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("peer %d: %w", i, err); cancel() })
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				progress(done.Load())
			}
		}
	}()
	wg.Wait()
	close(stop)
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return done.Load(), firstErr
}

// namespace is the name of namespace k: fill-0 to fill-999 for 1000, the
// names `rendezvous bench --ns-prefix fill- --namespaces 1000` aims at.
func namespace(k int) string { return "fill-" + strconv.Itoa(k) }

// registerPeer makes peer i: a host of its own, connected to the point,
// registering in every namespace on one stream.
func registerPeer(ctx context.Context, cfg config, i int, done *atomic.Int64) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.perPeer)
	defer cancel()
	h, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		return fmt.Errorf("starting a host: %w", err)
	}
	defer h.Close()
	if err := h.Connect(ctx, cfg.point); err != nil {
		return fmt.Errorf("connecting to %s: %w", cfg.point.ID, err)
	}
	rec, err := rendezvous.SealPeerRecord(h.Peerstore().PrivKey(h.ID()),
		[]ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 10000+i%50000))}, peer.TimestampSeq())
	if err != nil {
		return fmt.Errorf("sealing a record: %w", err)
	}
	s, err := h.NewStream(ctx, cfg.point.ID, rendezvous.ProtocolID)
	if err != nil {
		return fmt.Errorf("opening a stream: %w", err)
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	w, r := pbio.NewDelimitedWriter(s), pbio.NewDelimitedReader(s, 1<<20)
	for k := range cfg.namespaces {
		req := &pb.Message{
			Type: pb.Message_REGISTER.Enum(),
			Register: &pb.Message_Register{
				Ns:               proto.String(namespace(k)),
				SignedPeerRecord: rec,
				Ttl:              proto.Uint64(uint64(cfg.ttl / time.Second)),
			},
		}
		if err := w.WriteMsg(req); err != nil {
			_ = s.Reset()
			return fmt.Errorf("sending REGISTER %d: %w", k, err)
		}
		var resp pb.Message
		if err := r.ReadMsg(&resp); err != nil {
			_ = s.Reset()
			return fmt.Errorf("reading the answer to REGISTER %d: %w", k, err)
		}
		rr := resp.GetRegisterResponse()
		if rr == nil {
			return errors.New("the point answered a REGISTER with something else")
		}
		if rr.GetStatus() != rendezvous.StatusOK {
			return fmt.Errorf("REGISTER in %s: %w", namespace(k), &rendezvous.Error{Status: rr.GetStatus(), Text: rr.GetStatusText()})
		}
		done.Add(1)
	}
	return nil
}
