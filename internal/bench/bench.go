package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// Workload is what the load generator asks of a point.
type Workload string

// The workloads.
const (
	// WorkloadRegister registers each connection's peer in a random namespace.
	WorkloadRegister Workload = "register"
	// WorkloadDiscover discovers a random namespace.
	WorkloadDiscover Workload = "discover"
	// WorkloadMixed alternates at random between the two, half and half.
	WorkloadMixed Workload = "mixed"
	// WorkloadEcho sends a REGISTER-sized message to the echo protocol.
	WorkloadEcho Workload = "echo"
)

// maxSamples bounds the latencies kept for percentiles.
const maxSamples = 5_000_000

// Config is a load to generate.
type Config struct {
	// Point is the point to load.
	Point peer.AddrInfo
	// Conns is the number of client hosts, each its own peer with its own
	// connection, sending one request at a time.
	Conns int
	// Duration bounds the run; Ops, if not 0, ends it sooner.
	Duration time.Duration
	// Ops is the number of operations in all; 0 for no bound but Duration.
	Ops int
	// Namespaces is the number of namespaces to spread the load over.
	Namespaces int
	// NamespacePrefix names them: namespace i is NamespacePrefix followed by
	// i in decimal ("bench-" if empty). "fill-" aims at the namespaces
	// internal/fillpoint fills.
	NamespacePrefix string
	// Workload is what to ask.
	Workload Workload
	// DiscoverLimit is the limit of each DISCOVER.
	DiscoverLimit int
	// Protocol is the rendezvous protocol ID.
	Protocol protocol.ID
	// Progress, if not nil, is called about once a second.
	Progress func(ops, errors int64, elapsed time.Duration)
}

// Report is the outcome of a run.
type Report struct {
	Workload  Workload      `json:"workload"`
	Conns     int           `json:"conns"`
	Ops       int64         `json:"ops"`
	Errors    int64         `json:"errors"`
	Duration  time.Duration `json:"duration_ns"`
	OpsPerSec float64       `json:"ops_per_sec"`
	P50       time.Duration `json:"p50_ns"`
	P90       time.Duration `json:"p90_ns"`
	P99       time.Duration `json:"p99_ns"`
	// FirstError is the first error seen, if any.
	FirstError string `json:"first_error,omitempty"`
}

// Run generates the load of cfg and reports on it.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Conns < 1 || cfg.Namespaces < 1 || cfg.Duration <= 0 {
		return Report{}, errors.New("bench: need at least 1 connection, 1 namespace and a positive duration")
	}
	switch cfg.Workload {
	case WorkloadRegister, WorkloadDiscover, WorkloadMixed, WorkloadEcho:
	default:
		return Report{}, fmt.Errorf("bench: unknown workload %q", cfg.Workload)
	}
	if cfg.Protocol == "" {
		cfg.Protocol = rendezvous.ProtocolID
	}
	if cfg.NamespacePrefix == "" {
		cfg.NamespacePrefix = DefaultNamespacePrefix
	}
	workers, err := connect(ctx, cfg)
	defer func() {
		for _, w := range workers {
			_ = w.host.Close()
		}
	}()
	if err != nil {
		return Report{}, err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var ops, errs atomic.Int64
	var firstErr sync.Once
	rep := Report{Workload: cfg.Workload, Conns: cfg.Conns}
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if cfg.Ops > 0 && ops.Add(1) > int64(cfg.Ops) {
					ops.Add(-1)
					cancel()
					return
				}
				t0 := time.Now()
				err := w.do(ctx, cfg)
				d := time.Since(t0)
				if cfg.Ops == 0 {
					ops.Add(1)
				}
				if err != nil {
					if ctx.Err() != nil {
						ops.Add(-1)
						return
					}
					errs.Add(1)
					firstErr.Do(func() { rep.FirstError = err.Error() })
					continue
				}
				if len(w.latencies) < maxSamples/cfg.Conns {
					w.latencies = append(w.latencies, d)
				}
			}
		}()
	}
	if cfg.Progress != nil {
		go progress(ctx, start, &ops, &errs, cfg.Progress)
	}
	wg.Wait()
	rep.Duration = time.Since(start)
	rep.Ops, rep.Errors = ops.Load(), errs.Load()
	rep.OpsPerSec = float64(rep.Ops-rep.Errors) / rep.Duration.Seconds()
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.latencies...)
	}
	rep.P50, rep.P90, rep.P99 = percentile(all, 0.50), percentile(all, 0.90), percentile(all, 0.99)
	return rep, nil
}

func progress(ctx context.Context, start time.Time, ops, errs *atomic.Int64, report func(int64, int64, time.Duration)) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			report(ops.Load(), errs.Load(), time.Since(start))
		}
	}
}

// percentile returns the q-quantile of ds, sorting ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	if !slices.IsSorted(ds) {
		slices.Sort(ds)
	}
	return ds[int(q*float64(len(ds)-1))]
}

// worker is one client host with its prepared requests.
type worker struct {
	host      host.Host
	point     peer.ID
	rng       *rand.Rand
	registers []*pb.Message // one REGISTER per namespace
	latencies []time.Duration
}

// connect makes one host per connection, connected to the point.
func connect(ctx context.Context, cfg Config) ([]*worker, error) {
	workers := make([]*worker, cfg.Conns)
	errs := make([]error, cfg.Conns)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			workers[i], errs[i] = newWorker(ctx, cfg, uint64(i))
		}()
	}
	wg.Wait()
	var live []*worker
	for _, w := range workers {
		if w != nil {
			live = append(live, w)
		}
	}
	return live, errors.Join(errs...)
}

func newWorker(ctx context.Context, cfg Config, seed uint64) (*worker, error) {
	h, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h.Connect(cctx, cfg.Point); err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("bench: connecting to %s: %w", cfg.Point.ID, err)
	}
	rec, err := rendezvous.SealPeerRecord(h.Peerstore().PrivKey(h.ID()), []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}, peer.TimestampSeq())
	if err != nil {
		_ = h.Close()
		return nil, err
	}
	w := &worker{host: h, point: cfg.Point.ID, rng: rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))}
	for i := range cfg.Namespaces {
		w.registers = append(w.registers, &pb.Message{
			Type: pb.Message_REGISTER.Enum(),
			Register: &pb.Message_Register{
				Ns:               proto.String(namespace(cfg.NamespacePrefix, i)),
				SignedPeerRecord: rec,
				Ttl:              proto.Uint64(uint64(rendezvous.DefaultTTL / time.Second)),
			},
		})
	}
	return w, nil
}

// DefaultNamespacePrefix names the namespaces of a run told none.
const DefaultNamespacePrefix = "bench-"

func namespace(prefix string, i int) string { return prefix + strconv.Itoa(i) }

// do sends one request on a stream of its own, as clients do, and reads the
// answer.
func (w *worker) do(ctx context.Context, cfg Config) error {
	k := w.rng.IntN(cfg.Namespaces)
	req := w.registers[k]
	id := cfg.Protocol
	switch cfg.Workload {
	case WorkloadEcho:
		id = EchoProtocolID
	case WorkloadDiscover:
		req = discover(namespace(cfg.NamespacePrefix, k), cfg.DiscoverLimit)
	case WorkloadMixed:
		if w.rng.IntN(2) == 0 {
			req = discover(namespace(cfg.NamespacePrefix, k), cfg.DiscoverLimit)
		}
	}
	s, err := w.host.NewStream(ctx, w.point, id)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(30 * time.Second))
	if err := pbio.NewDelimitedWriter(s).WriteMsg(req); err != nil {
		_ = s.Reset()
		return err
	}
	// The answer is read before the stream is closed: a point that resets a
	// stream once it sees its end (the Waku one) would throw it away.
	var resp pb.Message
	if err := pbio.NewDelimitedReader(s, 1<<20).ReadMsg(&resp); err != nil {
		_ = s.Reset()
		return err
	}
	if id == EchoProtocolID {
		return nil
	}
	status := resp.GetRegisterResponse().GetStatus()
	if resp.GetType() == pb.Message_DISCOVER_RESPONSE {
		status = resp.GetDiscoverResponse().GetStatus()
	}
	if status != rendezvous.StatusOK {
		return &rendezvous.Error{Status: status, Text: resp.GetRegisterResponse().GetStatusText() + resp.GetDiscoverResponse().GetStatusText()}
	}
	return nil
}

// discover is a DISCOVER of namespace ns with an explicit, nonzero limit and
// no cookie field, as every implementation reads it.
func discover(ns string, limit int) *pb.Message {
	if limit <= 0 {
		limit = 1000
	}
	return &pb.Message{
		Type:     pb.Message_DISCOVER.Enum(),
		Discover: &pb.Message_Discover{Ns: proto.String(ns), Limit: proto.Uint64(uint64(limit))},
	}
}
