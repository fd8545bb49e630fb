package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/encoding/protowire"
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
	// PeerSeed, if not 0, makes the identities of the client hosts the
	// same from one run to the next: connection i's key is drawn from
	// PeerSeed and i. Runs that REGISTER then refresh the registrations
	// of the runs before them instead of adding to them. 0 draws new keys.
	PeerSeed uint64
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
	// Registrations is the number of registrations the DISCOVER answers
	// held, all together: over the DISCOVERs answered, the mean page.
	Registrations int64 `json:"registrations"`
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
		rep.Registrations += w.regs
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
	host  host.Host
	point peer.ID
	rng   *rand.Rand
	// registers and discovers are the requests of each namespace, with
	// their length prefix, ready to write.
	registers, discovers [][]byte
	// rd and buf read the answers, one stream after another.
	rd  *bufio.Reader
	buf []byte
	// regs counts the registrations of the DISCOVER answers.
	regs      int64
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
	opts := []libp2p.Option{libp2p.NoListenAddrs}
	if cfg.PeerSeed != 0 {
		key, err := seededKey(cfg.PeerSeed, seed)
		if err != nil {
			return nil, err
		}
		opts = append(opts, libp2p.Identity(key))
	}
	h, err := libp2p.New(opts...)
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
	w := &worker{host: h, point: cfg.Point.ID, rng: rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano()))), rd: bufio.NewReader(nil)}
	for i := range cfg.Namespaces {
		ns := namespace(cfg.NamespacePrefix, i)
		reg, err := delimited(&pb.Message{
			Type: pb.Message_REGISTER.Enum(),
			Register: &pb.Message_Register{
				Ns:               proto.String(ns),
				SignedPeerRecord: rec,
				Ttl:              proto.Uint64(uint64(rendezvous.DefaultTTL / time.Second)),
			},
		})
		if err != nil {
			_ = h.Close()
			return nil, err
		}
		disc, err := delimited(discover(ns, cfg.discoverLimit()))
		if err != nil {
			_ = h.Close()
			return nil, err
		}
		w.registers, w.discovers = append(w.registers, reg), append(w.discovers, disc)
	}
	return w, nil
}

// seededKey is the Ed25519 key of connection i of the runs with PeerSeed
// seed.
func seededKey(seed, i uint64) (crypto.PrivKey, error) {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:8], seed)
	binary.LittleEndian.PutUint64(s[8:16], i)
	key, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8(s))
	return key, err
}

// delimited is m with its length as a varint in front, as requests are
// written.
func delimited(m *pb.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append(protowire.AppendVarint(nil, uint64(len(b))), b...), nil
}

// maxAnswerSize bounds an answer read.
const maxAnswerSize = 1 << 20

// DefaultNamespacePrefix names the namespaces of a run told none.
const DefaultNamespacePrefix = "bench-"

func namespace(prefix string, i int) string { return prefix + strconv.Itoa(i) }

// do sends one request on a stream of its own, as clients do, reads the
// answer and checks it (see checkAnswer; an echo must come back as sent).
func (w *worker) do(ctx context.Context, cfg Config) error {
	k := w.rng.IntN(cfg.Namespaces)
	req, want := w.registers[k], pb.Message_REGISTER_RESPONSE
	id := cfg.Protocol
	switch cfg.Workload {
	case WorkloadEcho:
		id = EchoProtocolID
	case WorkloadDiscover:
		req, want = w.discovers[k], pb.Message_DISCOVER_RESPONSE
	case WorkloadMixed:
		if w.rng.IntN(2) == 0 {
			req, want = w.discovers[k], pb.Message_DISCOVER_RESPONSE
		}
	}
	s, err := w.host.NewStream(ctx, w.point, id)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := s.Write(req); err != nil {
		_ = s.Reset()
		return err
	}
	// The answer is read before the stream is closed: a point that resets a
	// stream once it sees its end (the Waku one) would throw it away.
	w.rd.Reset(s)
	defer w.rd.Reset(nil)
	n, err := binary.ReadUvarint(w.rd)
	if err == nil && n > maxAnswerSize {
		err = fmt.Errorf("answer of %d bytes, more than %d", n, maxAnswerSize)
	}
	if err != nil {
		_ = s.Reset()
		return err
	}
	if uint64(cap(w.buf)) < n {
		w.buf = make([]byte, n)
	}
	ans := w.buf[:n]
	if _, err := io.ReadFull(w.rd, ans); err != nil {
		_ = s.Reset()
		return err
	}
	if id == EchoProtocolID {
		if msg, _ := protowire.ConsumeBytes(req); !bytes.Equal(ans, msg) {
			return errors.New("echo answered other bytes than sent")
		}
		return nil
	}
	regs, err := checkAnswer(ans, want, namespace(cfg.NamespacePrefix, k), cfg.discoverLimit())
	w.regs += int64(regs)
	return err
}

// discover is a DISCOVER of namespace ns with an explicit, nonzero limit and
// no cookie field, as every implementation reads it.
func discover(ns string, limit int) *pb.Message {
	return &pb.Message{
		Type:     pb.Message_DISCOVER.Enum(),
		Discover: &pb.Message_Discover{Ns: proto.String(ns), Limit: proto.Uint64(uint64(limit))},
	}
}

// defaultDiscoverLimit is the limit of a DISCOVER when Config.DiscoverLimit
// is 0 or less.
const defaultDiscoverLimit = 1000

// discoverLimit is the limit each DISCOVER asks for.
func (cfg Config) discoverLimit() int {
	if cfg.DiscoverLimit <= 0 {
		return defaultDiscoverLimit
	}
	return cfg.DiscoverLimit
}
