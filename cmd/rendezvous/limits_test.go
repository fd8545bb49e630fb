package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/rendezvous-p2p/rendezvous"
)

func TestDeriveLimits(t *testing.T) {
	const GiB = 1 << 30
	for _, tc := range []struct {
		name      string
		mem       uint64
		fds       int
		want      Limits // the fields compared
		byFDLimit bool   // Conns bound by the file descriptors, not memory
	}{
		{
			name: "small machine", mem: 1 * GiB, fds: 65536,
			want: Limits{Memory: GiB / 4, Conns: 1024, ConnsPerIP: 16, ConnsPerSubnet: 64, Handshakes: 256,
				ConnBurstPerIP: 16, ConnRatePerIP: 0.5, ConnBurstPerSubnet: 64, ConnRatePerSubnet: 2.1,
				Streams: 8192, StreamsPerPeer: 16, StreamsPerIP: 64, StreamsPerSubnet: 256,
				Negotiating: 512, NegotiatingPerPeer: 8, NegotiatingPerIP: 16, NegotiatingPerSubnet: 64},
		},
		{
			name: "big machine", mem: 64 * GiB, fds: 1 << 20,
			want: Limits{Memory: 16 * GiB, Conns: 65536, ConnsPerIP: 512, ConnsPerSubnet: 2048, Handshakes: 16384,
				ConnBurstPerIP: 512, ConnRatePerIP: 17.1, ConnBurstPerSubnet: 2048, ConnRatePerSubnet: 68.3,
				Streams: 524288, StreamsPerPeer: 16, StreamsPerIP: 4096, StreamsPerSubnet: 16384,
				Negotiating: 32768, NegotiatingPerPeer: 8, NegotiatingPerIP: 256, NegotiatingPerSubnet: 1024},
		},
		{
			name: "low ulimit", mem: 64 * GiB, fds: 1024, byFDLimit: true,
			want: Limits{Memory: 16 * GiB, Conns: 768, ConnsPerIP: 16, ConnsPerSubnet: 64, Handshakes: 192,
				ConnBurstPerIP: 16, ConnRatePerIP: 0.5, ConnBurstPerSubnet: 64, ConnRatePerSubnet: 2.1,
				Streams: 524288, StreamsPerPeer: 16, StreamsPerIP: 4096, StreamsPerSubnet: 16384,
				Negotiating: 32768, NegotiatingPerPeer: 8, NegotiatingPerIP: 256, NegotiatingPerSubnet: 1024},
		},
		{
			name: "tiny machine, tiny ulimit", mem: GiB / 4, fds: 256, byFDLimit: true,
			want: Limits{Memory: GiB / 16, Conns: 192, ConnsPerIP: 16, ConnsPerSubnet: 64, Handshakes: 64,
				ConnBurstPerIP: 16, ConnRatePerIP: 0.5, ConnBurstPerSubnet: 64, ConnRatePerSubnet: 2.1,
				Streams: 2048, StreamsPerPeer: 16, StreamsPerIP: 64, StreamsPerSubnet: 256,
				Negotiating: 256, NegotiatingPerPeer: 8, NegotiatingPerIP: 16, NegotiatingPerSubnet: 64},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := DeriveLimits(tc.mem, tc.fds)
			want := tc.want
			want.NegotiationTimeout, want.IdleConnTimeout = DefaultNegotiationTimeout, DefaultIdleConnTimeout
			if got != want {
				t.Fatalf("DeriveLimits(%d, %d)\n got %+v\nwant %+v", tc.mem, tc.fds, got, want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("derived limits do not validate: %v", err)
			}
			// What they let peers hold fits the memory and the file descriptors.
			if cost := int64(got.Conns)*ConnCost + int64(got.Streams)*StreamCost; cost > got.Memory {
				t.Errorf("connections and streams may hold %d bytes, more than the %d reserved", cost, got.Memory)
			}
			if got.Conns > tc.fds {
				t.Errorf("%d connections with %d file descriptors", got.Conns, tc.fds)
			}
			if tc.byFDLimit != (got.Conns < int(got.Memory/2/ConnCost)) {
				t.Errorf("connections bound by the file descriptors: %v, want %v", !tc.byFDLimit, tc.byFDLimit)
			}
			// No source's share is the whole.
			if got.ConnsPerSubnet >= got.Conns || got.StreamsPerSubnet >= got.Streams || got.NegotiatingPerSubnet >= got.Negotiating {
				t.Errorf("a subnet may take every slot: %+v", got)
			}
		})
	}
}

func TestResourceLimitsCarryLimits(t *testing.T) {
	l := DeriveLimits(2<<30, 4096)
	cfg := l.resourceLimits().ToPartialLimitConfig()
	if got := cfg.System.ConnsInbound.Build(0); got != l.Conns {
		t.Errorf("system inbound connections %d, want %d", got, l.Conns)
	}
	if got := cfg.Transient.StreamsInbound.Build(0); got != l.Negotiating {
		t.Errorf("transient inbound streams %d, want %d", got, l.Negotiating)
	}
	if got := cfg.Transient.ConnsInbound.Build(0); got != l.Handshakes {
		t.Errorf("transient inbound connections %d, want %d", got, l.Handshakes)
	}
	if got := cfg.Service[rendezvous.ServiceName].StreamsInbound.Build(0); got != l.Streams {
		t.Errorf("service inbound streams %d, want %d", got, l.Streams)
	}
	if got := cfg.ServicePeer[rendezvous.ServiceName].StreamsInbound.Build(0); got != l.StreamsPerPeer {
		t.Errorf("service inbound streams per peer %d, want %d", got, l.StreamsPerPeer)
	}
	for _, id := range []protocol.ID{rendezvous.ProtocolID, rendezvous.CanvasProtocolID} {
		p := cfg.ProtocolPeer[id].StreamsInbound.Build(0)
		if p != l.StreamsPerPeer {
			t.Errorf("protocol %s: inbound streams per peer %d, want %d (the service's)", id, p, l.StreamsPerPeer)
		}
		if got := cfg.Protocol[id].StreamsInbound.Build(0); got != l.Streams {
			t.Errorf("protocol %s: inbound streams %d, want %d (the service's)", id, got, l.Streams)
		}
	}
	// A peer may hold its rendezvous streams and negotiate besides.
	if got := cfg.PeerDefault.StreamsInbound.Build(0); got < l.StreamsPerPeer+l.NegotiatingPerPeer {
		t.Errorf("peer inbound streams %d, less than %d + %d", got, l.StreamsPerPeer, l.NegotiatingPerPeer)
	}
	// Other services keep go-libp2p's limits (identify's, for one).
	if _, ok := cfg.Service["libp2p.identify"]; !ok {
		t.Error("identify's service limits are gone")
	}
}

func TestLimitsAreSettings(t *testing.T) {
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.flags(fs)
	if cfg.limits != MachineLimits() {
		t.Fatalf("defaults %+v, want the machine's %+v", cfg.limits, MachineLimits())
	}
	args := []string{
		"--max-conns", "100", "--max-conns-per-ip", "5", "--max-conns-per-subnet", "9", "--max-handshakes", "7",
		"--conn-rate-per-ip", "0.5", "--conn-burst-per-ip", "3", "--conn-rate-per-subnet", "1.5", "--conn-burst-per-subnet", "6",
		"--idle-conn-timeout", "30s", "--max-streams", "1000", "--max-streams-per-peer", "2", "--max-streams-per-ip", "20",
		"--max-streams-per-subnet", "40", "--max-negotiating", "300", "--max-negotiating-per-peer", "3",
		"--max-negotiating-per-ip", "4", "--max-negotiating-per-subnet", "8", "--negotiation-timeout", "2s",
		"--max-memory", "1073741824", "--limit-loopback",
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	l := cfg.limits
	want := Limits{Memory: 1 << 30, Conns: 100, ConnsPerIP: 5, ConnsPerSubnet: 9, Handshakes: 7,
		ConnRatePerIP: 0.5, ConnBurstPerIP: 3, ConnRatePerSubnet: 1.5, ConnBurstPerSubnet: 6, IdleConnTimeout: 30e9,
		Streams: 1000, StreamsPerPeer: 2, StreamsPerIP: 20, StreamsPerSubnet: 40,
		Negotiating: 300, NegotiatingPerPeer: 3, NegotiatingPerIP: 4, NegotiatingPerSubnet: 8, NegotiationTimeout: 2e9,
		LimitLoopback: true}
	if l != want {
		t.Fatalf("flags gave\n %+v\nwant %+v", l, want)
	}
	if err := (Limits{}).Validate(); err == nil {
		t.Error("zero limits validate")
	}
}

func TestLimitsFromConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"max-streams-per-ip": 99, "conn-rate-per-ip": 2.5, "negotiation-timeout": "3s", "limit-loopback": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.flags(fs)
	if err := applySettings(fs, path, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	l := cfg.limits
	if l.StreamsPerIP != 99 || l.ConnRatePerIP != 2.5 || l.NegotiationTimeout != 3*time.Second || !l.LimitLoopback {
		t.Fatalf("config file gave %+v", l)
	}
}
