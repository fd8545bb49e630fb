// Command soak runs a `rendezvous serve` it starts (the embedded store,
// --limit-loopback, the machine's default limits) under mixed abuse and
// measures what a legitimate client gets meanwhile. Three phases:
// BEFORE (-before, legitimate traffic only), DURING (-during, six abusers
// at once besides the legitimate traffic) and AFTER (-after, the abuse
// stopped). The abusers, each from its own loopback sources:
//
//   - fill (127.20.0.x): a few thousand peer IDs from one /24 registering
//     in new namespaces as fast as the point lets them, to reach the
//     per-source quotas;
//   - rate (127.21.0.1): one peer sending DISCOVERs back to back on a few
//     streams;
//   - idle streams (127.22.0.x): rendezvous streams on which nothing is
//     sent, opened again when the point resets them;
//   - trickling (127.23.0.x): streams that send the length prefix of a
//     64 KiB request and then one byte every few seconds;
//   - unnegotiated (127.24.0.x): streams that never finish multistream
//     negotiation;
//   - malformed (127.25.0.x): random bytes, oversized length prefixes,
//     invalid protobuf and REGISTERs with garbage records.
//
// The legitimate peers (127.30.0.x) refresh their registration and
// discover their namespace once a second each, with the client library;
// every request's latency and every failure is recorded by the phase it
// started in. Serve's RSS (/proc/PID/status) and goroutines (/metrics) are
// sampled every -sample. At the end soak reports, per phase, RSS and
// goroutines (min, max, final), the legitimate requests' p50, p99, max
// and failures, what each abuser got, and serve's refusal counters.
//
// It runs on loopback only (127.0.0.0/8), every loop is bounded, the
// abuse stops at the end of DURING, and the whole run within -timeout;
// serve is killed and its data directory removed at the end. It exits 1
// if a legitimate request failed. scripts/soak.sh builds serve and runs
// it; arguments after -- go to serve.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// config is what the command line sets.
type config struct {
	bin             string
	serveArgs       []string
	phases          [nPhases]time.Duration
	sample, timeout time.Duration
	legitPeers      int
	legitInterval   time.Duration
	abuse           abuseConfig
	abuseWindDown   time.Duration
	printSamples    bool
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "", "the rendezvous binary")
	flag.DurationVar(&cfg.phases[before], "before", time.Minute, "legitimate traffic only, before the abuse")
	flag.DurationVar(&cfg.phases[during], "during", 5*time.Minute, "abuse and legitimate traffic")
	flag.DurationVar(&cfg.phases[after], "after", time.Minute, "legitimate traffic only, after the abuse")
	flag.DurationVar(&cfg.sample, "sample", 5*time.Second, "how often serve's RSS and goroutines are read")
	flag.DurationVar(&cfg.timeout, "timeout", 0, "stop after this long, whatever happens (default the phases and 3 minutes)")
	flag.IntVar(&cfg.legitPeers, "legit", 5, "legitimate peers, from 127.30.0.1 on")
	flag.DurationVar(&cfg.legitInterval, "legit-interval", time.Second, "each legitimate peer refreshes and discovers once in this long")
	a := &cfg.abuse
	flag.IntVar(&a.fillKeys, "fill-keys", 2000, "peer IDs of the fill abuser")
	flag.IntVar(&a.fillAddrs, "fill-addrs", 5, "addresses of the fill abuser, in 127.20.0.0/24")
	flag.IntVar(&a.fillWorkers, "fill-workers", 4, "connections at once from each fill address")
	flag.IntVar(&a.fillNamespaces, "fill-namespaces", 3, "new namespaces a fill peer registers in on each connection")
	flag.IntVar(&a.rateStreams, "rate-streams", 4, "streams the rate abuser sends DISCOVERs on at once")
	flag.IntVar(&a.idleAddrs, "idle-addrs", 2, "addresses of the idle-stream abuser")
	flag.IntVar(&a.idlePeers, "idle-peers", 100, "idle-stream peers (connections) per address")
	flag.IntVar(&a.idleStreams, "idle-streams", 20, "idle streams per peer")
	flag.IntVar(&a.trickleAddrs, "trickle-addrs", 2, "addresses of the trickling abuser")
	flag.IntVar(&a.tricklePeers, "trickle-peers", 16, "trickling peers per address")
	flag.IntVar(&a.trickleStreams, "trickle-streams", 16, "trickling streams per peer")
	flag.DurationVar(&a.trickleEvery, "trickle-every", 2*time.Second, "time between two bytes of a trickling stream")
	flag.IntVar(&a.unnegAddrs, "unneg-addrs", 4, "addresses of the unnegotiated-stream abuser")
	flag.IntVar(&a.unnegPeers, "unneg-peers", 16, "unnegotiating peers per address")
	flag.IntVar(&a.unnegStreams, "unneg-streams", 10, "unnegotiated streams per peer")
	flag.IntVar(&a.malformedAddrs, "malformed-addrs", 2, "addresses of the malformed-frame abuser")
	flag.Float64Var(&a.malformedRate, "malformed-rate", 100, "malformed frames a second, in all")
	flag.DurationVar(&cfg.abuseWindDown, "wind-down", 30*time.Second, "longest wait for the abusers to stop at the end of DURING")
	flag.BoolVar(&cfg.printSamples, "print-samples", true, "print each sample as it is taken")
	flag.Parse()
	cfg.serveArgs = flag.Args()
	if err := cfg.check(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		flag.Usage()
		os.Exit(2)
	}
	if cfg.timeout == 0 {
		cfg.timeout = cfg.phases[before] + cfg.phases[during] + cfg.phases[after] + 3*time.Minute
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	failures, err := run(ctx, cfg)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if failures > 0 {
		os.Exit(1)
	}
}

func (c *config) check() error {
	a := c.abuse
	switch {
	case c.bin == "":
		return errors.New("-bin is required")
	case c.phases[before] <= 0 || c.phases[during] <= 0 || c.phases[after] <= 0 || c.sample <= 0 || c.legitInterval <= 0:
		return errors.New("durations must be positive")
	case c.legitPeers < 1 || c.legitPeers > 250:
		return errors.New("-legit must be within 1..250")
	case a.fillKeys < 1 || a.fillKeys > 100_000 || a.fillAddrs < 1 || a.fillAddrs > 250 || a.fillWorkers < 1 || a.fillNamespaces < 1:
		return errors.New("-fill-keys (1..100000), -fill-addrs (1..250), -fill-workers and -fill-namespaces must be positive")
	case a.rateStreams < 1 || a.rateStreams > 64:
		return errors.New("-rate-streams must be within 1..64")
	case a.idleAddrs < 0 || a.idleAddrs > 250 || a.trickleAddrs < 0 || a.trickleAddrs > 250 ||
		a.unnegAddrs < 0 || a.unnegAddrs > 250 || a.malformedAddrs < 1 || a.malformedAddrs > 250:
		return errors.New("addresses per abuser must be within 0..250 (1..250 for -malformed-addrs)")
	case a.idlePeers*a.idleStreams > 100_000 || a.tricklePeers*a.trickleStreams > 100_000 || a.unnegPeers*a.unnegStreams > 100_000:
		return errors.New("at most 100,000 streams per address")
	case a.trickleEvery <= 0 || a.malformedRate <= 0 || a.malformedRate > 10_000:
		return errors.New("-trickle-every must be positive, -malformed-rate within (0, 10000]")
	}
	return nil
}

func run(ctx context.Context, cfg config) (int, error) {
	fmt.Printf("# %s, %d cores, %s, load average %s\n", time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), memTotal(), loadAverage())
	abs, err := abusers(cfg.abuse)
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "soak")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	metricsAddr, err := freePort()
	if err != nil {
		return 0, err
	}
	args := append([]string{"serve", "--data-dir", filepath.Join(dir, "data"), "--listen", "/ip4/127.0.0.1/tcp/0",
		"--metrics-addr", metricsAddr, "--limit-loopback", "--log-level", "warn"}, cfg.serveArgs...)
	fmt.Printf("# rendezvous %s\n", strings.Join(args, " "))
	serve := exec.CommandContext(ctx, cfg.bin, args...)
	serve.Stderr = os.Stderr
	out, err := serve.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := serve.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = serve.Process.Kill(); _ = serve.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("serve printed no address: %w", err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	point, err := peer.AddrInfoFromString(strings.TrimSpace(line))
	if err != nil {
		return 0, err
	}
	pid := serve.Process.Pid

	// The legitimate peers run through every phase.
	var clk clock
	lat := newLatencies()
	peers, err := startLegit(ctx, point, cfg.legitPeers, &clk, lat)
	defer func() {
		for _, lp := range peers {
			lp.close()
		}
	}()
	if err != nil {
		return 0, err
	}
	legitCtx, stopLegit := context.WithCancel(ctx)
	defer stopLegit()
	var legitWG sync.WaitGroup
	var registered atomic.Int64
	for i, lp := range peers {
		offset := cfg.legitInterval * time.Duration(i) / time.Duration(len(peers))
		legitWG.Go(func() { lp.loop(legitCtx, point.ID, cfg.legitInterval, offset, &clk, lat, &registered) })
	}

	// Samples every cfg.sample, and at the end of each phase.
	var (
		samplesMu sync.Mutex
		samples   []sample
	)
	take := func() (sample, error) {
		s, err := takeSample(pid, metricsAddr, clk.now())
		if err != nil {
			return s, err
		}
		samplesMu.Lock()
		samples = append(samples, s)
		samplesMu.Unlock()
		if cfg.printSamples {
			fmt.Println(s)
		}
		return s, nil
	}
	samplerCtx, stopSampler := context.WithCancel(ctx)
	defer stopSampler()
	var samplerWG sync.WaitGroup
	samplerWG.Go(func() {
		t := time.NewTicker(cfg.sample)
		defer t.Stop()
		for {
			select {
			case <-samplerCtx.Done():
				return
			case <-t.C:
				if _, err := take(); err != nil && samplerCtx.Err() == nil {
					fmt.Fprintln(os.Stderr, "soak: sampling:", err)
				}
			}
		}
	})

	var bounds [nPhases + 1]sample // at the start and the end of each phase
	if bounds[0], err = take(); err != nil {
		return 0, err
	}
	// BEFORE
	if !sleep(ctx, cfg.phases[before]) {
		return 0, fmt.Errorf("stopped in %s: %w", clk.now(), ctx.Err())
	}
	if bounds[1], err = take(); err != nil {
		return 0, err
	}
	// DURING
	clk.set(during)
	abuseCtx, stopAbuse := context.WithTimeout(ctx, cfg.phases[during])
	defer stopAbuse()
	var abuseWG sync.WaitGroup
	for _, ab := range abs {
		abuseWG.Go(func() { ab.run(abuseCtx, point, ab.tally) })
	}
	<-abuseCtx.Done()
	if ctx.Err() != nil {
		return 0, fmt.Errorf("stopped in %s: %w", clk.now(), ctx.Err())
	}
	// The abusers close their connections; AFTER starts once they are done.
	abuseDone := make(chan struct{})
	go func() { abuseWG.Wait(); close(abuseDone) }()
	select {
	case <-abuseDone:
	case <-time.After(cfg.abuseWindDown):
		fmt.Fprintf(os.Stderr, "soak: the abusers did not all stop within %v of the end of DURING\n", cfg.abuseWindDown)
	}
	if bounds[2], err = take(); err != nil {
		return 0, err
	}
	// AFTER
	clk.set(after)
	if !sleep(ctx, cfg.phases[after]) {
		return 0, fmt.Errorf("stopped in %s: %w", clk.now(), ctx.Err())
	}
	if bounds[3], err = take(); err != nil {
		return 0, err
	}
	stopLegit()
	legitWG.Wait()
	stopSampler()
	samplerWG.Wait()

	report(cfg, bounds, samples, lat, abs)
	fmt.Printf("# load average at the end %s\n", loadAverage())
	n := lat.failures()
	if n > 0 {
		fmt.Printf("FAILED: %d legitimate requests failed\n", n)
	}
	return n, nil
}

// report prints the figures of each phase, what each abuser did, and
// serve's refusal counters at the end.
func report(cfg config, bounds [nPhases + 1]sample, samples []sample, lat *latencies, abs []abuser) {
	fmt.Println()
	for p := range nPhases {
		var in []sample
		for _, s := range samples {
			if s.phase == p {
				in = append(in, s)
			}
		}
		start, end := bounds[p], bounds[p+1]
		secs := end.at.Sub(start.at).Seconds()
		minRSS, maxRSS, minG, maxG := in[0].rssMB(), in[0].rssMB(), in[0].goroutines(), in[0].goroutines()
		var maxConns, maxStreams, maxNeg int
		for _, s := range in {
			minRSS, maxRSS = min(minRSS, s.rssMB()), max(maxRSS, s.rssMB())
			minG, maxG = min(minG, s.goroutines()), max(maxG, s.goroutines())
			maxConns, maxStreams, maxNeg = max(maxConns, s.conns()), max(maxStreams, s.rendezvousStreams()), max(maxNeg, s.negotiating())
		}
		fmt.Printf("%s (%.0f s, %d samples)\n", p, secs, len(in))
		fmt.Printf("  serve: RSS %.1f / %.1f / %.1f MB, goroutines %d / %d / %d (min / max / final)\n",
			minRSS, maxRSS, end.rssMB(), minG, maxG, end.goroutines())
		fmt.Printf("  serve held at most %d connections, %d rendezvous streams, %d negotiating streams; %d registrations at the end\n",
			maxConns, maxStreams, maxNeg, end.registrations())
		fmt.Printf("  CPU: serve %.0f%% of a core, this program %.0f%%\n",
			100*(end.cpu()-start.cpu())/secs, 100*(end.selfCPU-start.selfCPU).Seconds()/secs)
		for _, typ := range []string{"REGISTER", "DISCOVER"} {
			fmt.Printf("  legitimate %s\n", lat.summary(p, typ))
		}
		fmt.Printf("  legitimate peers connected to the point %d times\n", lat.connections(p))
	}
	fmt.Println()
	fmt.Println("abuse (DURING):")
	for _, ab := range abs {
		fmt.Printf("  %s (%s):\n", ab.name, ab.sources)
		lines := ab.tally.lines()
		const most = 20
		for i, l := range lines {
			if i == most {
				fmt.Printf("    ... %d more\n", len(lines)-most)
				break
			}
			fmt.Printf("    %s\n", l)
		}
	}
	fmt.Println()
	fmt.Println("refusals at the end:")
	final := bounds[nPhases].m
	for _, name := range []string{"libp2p_rendezvous_refusals_total", "libp2p_rendezvous_source_refusals_total", "libp2p_rcmgr_blocked_resources"} {
		for _, l := range final.nonzero(name) {
			fmt.Printf("  %s\n", l)
		}
	}
	fmt.Println("requests at the end:")
	for _, l := range final.nonzero("libp2p_rendezvous_requests_total") {
		fmt.Printf("  %s\n", l)
	}
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "memory unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		var kb int
		if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
			return fmt.Sprintf("%.1f GB", float64(kb)/1e6)
		}
	}
	return "memory unknown"
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
