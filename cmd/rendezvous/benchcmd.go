package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/bench"
)

func benchCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		point    string
		workload string
		proto    string
		asJSON   bool
		quiet    bool
		cpuProf  string
		cfg      bench.Config
	)
	fs.StringVar(&point, "point", "", "multiaddr of the point, ending in /p2p/<peer id> (required)")
	fs.IntVar(&cfg.Conns, "conns", 16, "concurrent client hosts, each its own peer and connection")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to run")
	fs.IntVar(&cfg.Ops, "ops", 0, "stop after this many operations (0: run for --duration)")
	fs.IntVar(&cfg.Namespaces, "namespaces", 10, "namespaces to spread the load over")
	fs.StringVar(&cfg.NamespacePrefix, "ns-prefix", bench.DefaultNamespacePrefix, "namespace i is this prefix followed by i")
	fs.StringVar(&workload, "workload", "mixed", "register, discover, mixed (half each) or echo (needs serve --bench-echo)")
	fs.IntVar(&cfg.DiscoverLimit, "limit", 100, "limit of each DISCOVER")
	fs.Uint64Var(&cfg.PeerSeed, "peer-seed", 0, "if not 0, connection i is the same peer in every run with this seed (0: new peers)")
	fs.StringVar(&proto, "protocol", string(rendezvous.ProtocolID), "rendezvous protocol ID")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&quiet, "quiet", false, "no progress line")
	fs.StringVar(&cpuProf, "cpuprofile", "", "write a CPU profile of the load generator's run to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	info, err := peer.AddrInfoFromString(point)
	if err != nil {
		fmt.Fprintf(stderr, "rendezvous bench: --point %q: %v\n", point, err)
		return 2
	}
	cfg.Point = *info
	cfg.Workload = bench.Workload(workload)
	cfg.Protocol = protocol.ID(proto)
	if !quiet {
		cfg.Progress = func(ops, errs int64, elapsed time.Duration) {
			fmt.Fprintf(stderr, "\r%s: %d ops, %d errors, %.0f ops/s   ", elapsed.Round(time.Second), ops, errs, float64(ops)/elapsed.Seconds())
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cpuProf != "" {
		f, err := os.Create(cpuProf)
		if err != nil {
			fmt.Fprintf(stderr, "rendezvous bench: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "rendezvous bench: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(ctx, cfg)
	if !quiet {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "rendezvous bench: %s\n", oneLine(err))
		return 1
	}
	if asJSON {
		_ = json.NewEncoder(stdout).Encode(rep)
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "WORKLOAD\tCONNS\tOPS\tERRORS\tOPS/S\tP50\tP90\tP99")
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\n", rep.Workload, rep.Conns, rep.Ops, rep.Errors, rep.OpsPerSec,
			rep.P50.Round(time.Microsecond), rep.P90.Round(time.Microsecond), rep.P99.Round(time.Microsecond))
		_ = tw.Flush()
		if rep.FirstError != "" {
			fmt.Fprintf(stdout, "first error: %s\n", rep.FirstError)
		}
	}
	if rep.Ops > 0 && rep.Errors == rep.Ops {
		return 1
	}
	return 0
}
