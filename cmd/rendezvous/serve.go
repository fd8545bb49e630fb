package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/bench"
	"github.com/rendezvous-p2p/rendezvous/internal/identity"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/sqlite"
)

// DefaultListen is where serve listens without --listen: TCP and QUIC on
// loopback. Listen on /ip4/0.0.0.0/... to serve other machines, and add a
// /tcp/PORT/ws address for WebSocket peers.
var DefaultListen = []string{"/ip4/127.0.0.1/tcp/4457", "/ip4/127.0.0.1/udp/4457/quic-v1"}

// DefaultDataDir is where serve keeps its identity and embedded store
// without --data-dir.
const DefaultDataDir = "rendezvous-data"

// DefaultEmbeddedMmapSize is the default of --embedded-mmap-size: the bytes
// of the embedded store's database file read through a memory map.
const DefaultEmbeddedMmapSize = 0

// DefaultEmbeddedSync is the default of --embedded-sync: every commit of the
// embedded store is on disk before its REGISTERs are answered.
const DefaultEmbeddedSync = "full"

// serveConfig is what serve is told on its command line.
type serveConfig struct {
	config      string
	listen      stringList
	announce    stringList
	identity    string
	dataDir     string
	store       string
	mmapSize    int64
	syncMode    string
	memoryLimit int64
	benchEcho   bool
	metricsAddr string
	pprofAddr   string
	rcMetrics   bool
	logFormat   string
	logLevel    string
	canvas      bool
	limits      Limits
	allowPrefix stringList
	allowPeer   stringList
	resources   server.Resources
}

func (c *serveConfig) flags(fs *flag.FlagSet) {
	c.listen.values = append([]string(nil), DefaultListen...)
	c.resources = server.DefaultResources()
	c.limits = MachineLimits()
	r := &c.resources
	fs.StringVar(&c.config, "config", "", "JSON file of settings, keyed by flag name (env "+envName("config")+")")
	fs.Var(&c.listen, "listen", "multiaddr to listen on (repeatable; default "+strings.Join(DefaultListen, ", ")+")")
	fs.Var(&c.announce, "announce", "multiaddr to print and give peers in identify instead of the listen addresses, such as a public IP or DNS name in front of a NAT or a container (repeatable; certhashes are added to WebTransport and WebRTC-direct ones)")
	fs.StringVar(&c.dataDir, "data-dir", DefaultDataDir, "directory of the identity and the embedded store, used by one serve at a time")
	fs.StringVar(&c.identity, "identity", "", "private key file, created (mode 0600) when missing (default DATA-DIR/identity.key)")
	fs.StringVar(&c.store, "store", "embedded", "where registrations are kept: embedded (in DATA-DIR), memory, or a postgres:// URL")
	fs.Int64Var(&c.mmapSize, "embedded-mmap-size", DefaultEmbeddedMmapSize, "bytes of the embedded store's database file read through a memory map, which count in the resident memory up to the whole file (0: none; pages are then read into SQLite's page cache of "+fmt.Sprint(sqlite.DefaultCacheKiB>>10)+" MiB per connection)")
	fs.StringVar(&c.syncMode, "embedded-sync", DefaultEmbeddedSync, "when the embedded store's commits reach the disk: full (each before its REGISTERs are answered: nothing answered is lost, even on power loss) or normal (later, when the log is checkpointed: a crash of serve loses nothing, a power loss may lose the last REGISTERs answered; cookies stay exact either way)")
	fs.Int64Var(&c.memoryLimit, "memory-limit", 0, "soft limit in bytes on the Go runtime's memory (debug.SetMemoryLimit; the garbage collector runs more often near it; 0: off, or GOMEMLIMIT's)")
	fs.BoolVar(&c.benchEcho, "bench-echo", false, "also serve the echo protocol of 'rendezvous bench --workload echo'")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "HTTP address serving /metrics, /healthz and /readyz (off if empty)")
	fs.StringVar(&c.pprofAddr, "pprof", "", "HTTP address serving Go's profiles under /debug/pprof/ (off if empty; never expose it)")
	fs.BoolVar(&c.rcMetrics, "resource-metrics", false, "export all of go-libp2p's resource-manager metrics (per-peer histograms, memory); without it only its refusals, the connections and streams in use, and the limits (with --metrics-addr; without one, go-libp2p keeps no metrics)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&c.canvas, "canvas", false, "also serve "+string(rendezvous.CanvasProtocolID)+" (JavaScript peers' default)")
	fs.DurationVar(&r.MinTTL, "min-ttl", r.MinTTL, "shortest TTL a peer may register for")
	fs.DurationVar(&r.MaxTTL, "max-ttl", r.MaxTTL, "longest TTL a peer may register for")
	fs.DurationVar(&r.DefaultTTL, "default-ttl", r.DefaultTTL, "TTL of a registration that asks for none")
	fs.IntVar(&r.MaxRegistrationsPerPeer, "max-registrations-per-peer", r.MaxRegistrationsPerPeer, "namespaces one peer may be registered in")
	fs.IntVar(&r.MaxRegistrations, "max-registrations", r.MaxRegistrations, "registrations the point holds")
	fs.IntVar(&r.MaxNamespaces, "max-namespaces", r.MaxNamespaces, "namespaces the point holds")
	fs.IntVar(&r.MaxRegistrationsPerIPv4, "max-registrations-per-ipv4", r.MaxRegistrationsPerIPv4, "live registrations from one IPv4 address")
	fs.IntVar(&r.MaxRegistrationsPerIPv4Net, "max-registrations-per-ipv4-net", r.MaxRegistrationsPerIPv4Net, "live registrations from one IPv4 /24")
	fs.IntVar(&r.MaxRegistrationsPerIPv6Subnet, "max-registrations-per-ipv6-subnet", r.MaxRegistrationsPerIPv6Subnet, "live registrations from one IPv6 /64")
	fs.IntVar(&r.MaxRegistrationsPerIPv6Net, "max-registrations-per-ipv6-net", r.MaxRegistrationsPerIPv6Net, "live registrations from one IPv6 /48")
	fs.IntVar(&r.CrowdedPercent, "crowded-percent", r.CrowdedPercent, "fill (percent of max-registrations or max-namespaces) above which a network holding crowded-share registrations gets no new one")
	fs.IntVar(&r.CrowdedShare, "crowded-share", r.CrowdedShare, "registrations a network (IPv4 /24, IPv6 /48) may hold and still register anew on a crowded point")
	fs.Float64Var(&r.RegisterRate.RPS, "register-rate", r.RegisterRate.RPS, "REGISTERs and UNREGISTERs per second from one address (IPv4, IPv6 /64)")
	fs.IntVar(&r.RegisterRate.Burst, "register-burst", r.RegisterRate.Burst, "REGISTERs at once from one address")
	fs.Float64Var(&r.RegisterNetRate.RPS, "register-net-rate", r.RegisterNetRate.RPS, "REGISTERs per second from one network (IPv4 /24, IPv6 /48)")
	fs.IntVar(&r.RegisterNetRate.Burst, "register-net-burst", r.RegisterNetRate.Burst, "REGISTERs at once from one network")
	fs.Float64Var(&r.DiscoverRate.RPS, "discover-rate", r.DiscoverRate.RPS, "DISCOVERs per second from one address")
	fs.IntVar(&r.DiscoverRate.Burst, "discover-burst", r.DiscoverRate.Burst, "DISCOVERs at once from one address")
	fs.Float64Var(&r.DiscoverNetRate.RPS, "discover-net-rate", r.DiscoverNetRate.RPS, "DISCOVERs per second from one network")
	fs.IntVar(&r.DiscoverNetRate.Burst, "discover-net-burst", r.DiscoverNetRate.Burst, "DISCOVERs at once from one network")
	fs.Var(&c.allowPrefix, "allow-prefix", "trusted network (CIDR) held by no per-source quota or rate (repeatable)")
	fs.Var(&c.allowPeer, "allow-peer", "trusted peer ID held by no per-source quota or rate (repeatable)")
	fs.IntVar(&r.DefaultDiscoverLimit, "discover-limit", r.DefaultDiscoverLimit, "registrations per DISCOVER that gives no limit")
	fs.IntVar(&r.MaxDiscoverLimit, "max-discover-limit", r.MaxDiscoverLimit, "most registrations per DISCOVER")
	fs.IntVar(&r.MaxDiscoverResponseSize, "max-discover-response-size", r.MaxDiscoverResponseSize, "bytes per DISCOVER response")
	fs.IntVar(&r.MaxRequestSize, "max-request-size", r.MaxRequestSize, "bytes per request; larger ones reset the stream")
	fs.IntVar(&r.MaxRecordSize, "max-record-size", r.MaxRecordSize, "bytes per signed peer record")
	fs.DurationVar(&r.IdleTimeout, "idle-timeout", r.IdleTimeout, "wait for the next request on a stream")
	fs.DurationVar(&r.RequestTimeout, "request-timeout", r.RequestTimeout, "time to handle one request")
	fs.DurationVar(&r.StatsInterval, "stats-interval", r.StatsInterval, "how often the store's counts are exported")
	fs.DurationVar(&r.FaultLogInterval, "fault-log-interval", r.FaultLogInterval, "least time between two log lines about the same store fault")
	fs.IntVar(&r.RecordCacheSize, "record-cache-size", r.RecordCacheSize, "peers whose last verified record is remembered, so a refresh skips the signature check (0: none)")
	fs.IntVar(&r.StreamWorkers, "stream-workers", r.StreamWorkers, "goroutines kept to serve streams on stacks already grown (0: none)")
	fs.DurationVar(&r.StreamWorkerIdle, "stream-worker-idle", r.StreamWorkerIdle, "how long a stream worker waits for a stream before it exits")
	c.limits.flags(fs)
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg serveConfig
	cfg.flags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "rendezvous", version)
		return 0
	}
	if cfg.config == "" {
		cfg.config = os.Getenv(envName("config"))
	}
	if err := applySettings(fs, cfg.config, os.Getenv); err != nil {
		fmt.Fprintln(stderr, "rendezvous serve:", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rendezvous serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log, err := newLogger(stderr, cfg.logFormat, cfg.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "rendezvous serve:", err)
		return 2
	}
	if err := setMemoryLimit(cfg.memoryLimit); err != nil {
		fmt.Fprintln(stderr, "rendezvous serve:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runPoint(ctx, cfg, log, stdout); err != nil {
		log.Error("serve failed", "err", err)
		return 1
	}
	return 0
}

// setMemoryLimit sets the Go runtime's soft memory limit to n bytes; 0
// leaves it as it is (off, or what GOMEMLIMIT set).
func setMemoryLimit(n int64) error {
	if n < 0 {
		return fmt.Errorf("--memory-limit %d: want 0 (off) or a number of bytes", n)
	}
	if n > 0 {
		debug.SetMemoryLimit(n)
	}
	return nil
}

// runPoint serves until ctx is done, then shuts down in order: the HTTP
// endpoints, the protocol handler (letting requests in flight finish), the
// host and the store.
func runPoint(ctx context.Context, cfg serveConfig, log *slog.Logger, stdout io.Writer) error {
	p, err := startPoint(cfg, log)
	if err != nil {
		return err
	}
	defer p.close()
	for _, a := range p.host.Addrs() {
		fmt.Fprintf(stdout, "%s/p2p/%s\n", a, p.host.ID())
	}
	if len(cfg.announce.values) > 0 {
		log.Info("announcing instead of the listen addresses", "listen", p.host.Network().ListenAddresses())
	}
	log.Info("rendezvous point ready", "peer", p.host.ID(), "store", redactStore(cfg.store))
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

// point is a running rendezvous point: its host, its server and what
// serves them.
type point struct {
	host  host.Host
	reg   *prometheus.Registry
	close func() // shuts the point down, in order
}

// startPoint opens the store, builds the host, mounts the point on it and
// starts the HTTP endpoints and the closing of idle connections.
func startPoint(cfg serveConfig, log *slog.Logger) (_ *point, err error) {
	// The data directory is this process's alone until the point has
	// closed (or the process ends).
	release, err := openDataDir(cfg.dataDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	if err := cfg.resources.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.limits.Validate(); err != nil {
		return nil, err
	}
	allow, err := cfg.allowlist()
	if err != nil {
		return nil, err
	}
	if !cfg.limits.LimitLoopback {
		// Loopback is exempt from every per-source limit, as go-libp2p
		// exempts it from its per-IP connection limits.
		allow.Prefixes = append(allow.Prefixes, netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))
	}
	if cfg.identity == "" {
		cfg.identity = filepath.Join(cfg.dataDir, "identity.key")
	}
	key, err := identity.LoadOrCreate(cfg.identity)
	if err != nil {
		return nil, err
	}
	// Closers run last first: the endpoints stop, then the point finishes
	// the requests in flight, then the host and the store close.
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()

	st, err := openStore(context.Background(), cfg.store, cfg.dataDir, embeddedConfig{mmapSize: cfg.mmapSize, syncMode: cfg.syncMode})
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() {
		if err := st.Close(); err != nil {
			log.Error("closing the store", "err", err)
		}
	})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h, err := newHost(cfg, key, reg)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { _ = h.Close() })
	idle, err := watchIdleConns(h, cfg.limits.IdleConnTimeout)
	if err != nil {
		return nil, err
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		idle.run(sweepCtx)
	}()
	closers = append(closers, func() { stopSweep(); <-swept })

	opts := []server.Option{
		server.WithResources(cfg.resources),
		server.WithAllowlist(allow),
		server.WithLogger(log),
		server.WithMetricsTracer(server.NewMetricsTracer(reg)),
	}
	if cfg.canvas {
		opts = append(opts, server.WithProtocols(rendezvous.ProtocolID, rendezvous.CanvasProtocolID))
	}
	srv, err := server.New(h, st, opts...)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { _ = srv.Close() })
	if cfg.benchEcho {
		bench.MountEcho(h)
	}

	var ready atomic.Bool
	if cfg.metricsAddr != "" {
		stopHTTP, err := serveHTTP(cfg.metricsAddr, reg, st, srv.Healthy, &ready, log)
		if err != nil {
			return nil, err
		}
		closers = append(closers, stopHTTP)
	}
	if cfg.pprofAddr != "" {
		stopPprof, err := servePprof(cfg.pprofAddr, log)
		if err != nil {
			return nil, err
		}
		closers = append(closers, stopPprof)
	}
	ready.Store(true)
	closers = append(closers, func() { ready.Store(false) })
	return &point{host: h, reg: reg, close: func() { closeAll(); release() }}, nil
}

// allowlist parses --allow-prefix and --allow-peer.
func (c serveConfig) allowlist() (server.Allowlist, error) {
	var a server.Allowlist
	for _, v := range c.allowPrefix.values {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return a, fmt.Errorf("--allow-prefix %q: %w", v, err)
		}
		a.Prefixes = append(a.Prefixes, p.Masked())
	}
	for _, v := range c.allowPeer.values {
		id, err := peer.Decode(v)
		if err != nil {
			return a, fmt.Errorf("--allow-peer %q: %w", v, err)
		}
		a.Peers = append(a.Peers, id)
	}
	return a, nil
}

// newHost builds the point's host: cfg's listen addresses, its limits in
// the resource manager, the connection manager and the negotiation
// timeout.
func newHost(cfg serveConfig, key crypto.PrivKey, reg prometheus.Registerer) (host.Host, error) {
	// The addresses printed and given in identify instead of the listen
	// addresses. Every transport go-libp2p has by default listens: TCP,
	// QUIC, WebSocket, WebTransport and WebRTC-direct.
	announce, err := parseAddrs(cfg.announce.values)
	if err != nil {
		return nil, fmt.Errorf("--announce: %w", err)
	}
	// Without a metrics endpoint nothing reads go-libp2p's metrics: none is
	// kept, and the resource manager keeps no trace of its events.
	metrics := resourceMetricsOff
	switch {
	case cfg.metricsAddr != "" && cfg.rcMetrics:
		metrics = resourceMetricsFull
	case cfg.metricsAddr != "":
		metrics = resourceMetricsCore
	}
	mgr, err := newResourceManager(cfg.limits, metrics, reg)
	if err != nil {
		return nil, err
	}
	low, high := cfg.limits.connManagerWatermarks()
	cm, err := connmgr.NewConnManager(low, high)
	if err != nil {
		_ = mgr.Close()
		return nil, err
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(cfg.listen.values...),
		libp2p.ResourceManager(mgr),
		libp2p.ConnectionManager(cm),
	}
	if metrics == resourceMetricsOff {
		opts = append(opts, libp2p.DisableMetrics())
	} else {
		opts = append(opts, libp2p.PrometheusRegisterer(reg))
	}
	if len(announce) > 0 {
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return announce }))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		_ = mgr.Close()
		return nil, err
	}
	if err := limitNegotiation(h, cfg.limits.NegotiationTimeout); err != nil {
		_ = h.Close()
		return nil, err
	}
	return h, nil
}

// serveHTTP serves /metrics, /healthz (the process is up) and /readyz (the
// point is serving, its store answers and does not fail its writes) on
// addr.
func serveHTTP(addr string, reg *prometheus.Registry, st store.Store, healthy func() error, ready *atomic.Bool, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := st.Stats(ctx, time.Now()); err != nil {
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		if err := healthy(); err != nil {
			http.Error(w, "store failing writes", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint failed", "err", err)
		}
	}()
	log.Info("metrics endpoint ready", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
}
