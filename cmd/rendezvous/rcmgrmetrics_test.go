package main

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rendezvous-p2p/rendezvous"
)

// TestRefusalsCountedWithoutResourceMetrics checks that, without
// --resource-metrics, the resource manager's refusals and the rendezvous
// streams in use are still in go-libp2p's metrics, and its per-peer ones
// are not updated.
func TestRefusalsCountedWithoutResourceMetrics(t *testing.T) {
	reg, mgr := oneStreamPerPeer(t, resourceMetricsCore)

	before := gauge(t, reg, "libp2p_rcmgr_blocked_resources", map[string]string{"dir": "inbound", "scope": "protocol", "resource": "stream"})
	peerStreams := histogramCount(t, reg, "libp2p_rcmgr_peer_streams")
	openSecondStream(t, mgr)
	if got := gauge(t, reg, "libp2p_rcmgr_blocked_resources", map[string]string{"dir": "inbound", "scope": "protocol", "resource": "stream"}); got != before+1 {
		t.Errorf("blocked protocol streams: %v, want %v", got, before+1)
	}
	if got := gauge(t, reg, "libp2p_rcmgr_streams", map[string]string{"dir": "inbound", "scope": "protocol", "protocol": string(rendezvous.ProtocolID)}); got != 1 {
		t.Errorf("rendezvous streams in use: %v, want 1", got)
	}
	if got := histogramCount(t, reg, "libp2p_rcmgr_peer_streams"); got != peerStreams {
		t.Errorf("per-peer stream histogram updated (%d observations, was %d)", got, peerStreams)
	}
}

// TestNoResourceMetricsWithoutEndpoint checks that with metrics off the
// resource manager still refuses what its limits refuse, and that neither
// the refusal nor the stream in use reaches go-libp2p's metrics.
func TestNoResourceMetricsWithoutEndpoint(t *testing.T) {
	reg, mgr := oneStreamPerPeer(t, resourceMetricsOff)

	blocked := map[string]string{"dir": "inbound", "scope": "protocol", "resource": "stream"}
	inUse := map[string]string{"dir": "inbound", "scope": "protocol", "protocol": string(rendezvous.ProtocolID)}
	blockedBefore, inUseBefore := gauge(t, reg, "libp2p_rcmgr_blocked_resources", blocked), gauge(t, reg, "libp2p_rcmgr_streams", inUse)
	openSecondStream(t, mgr)
	if got := gauge(t, reg, "libp2p_rcmgr_blocked_resources", blocked); got != blockedBefore {
		t.Errorf("blocked protocol streams: %v, want %v (no metrics)", got, blockedBefore)
	}
	if got := gauge(t, reg, "libp2p_rcmgr_streams", inUse); got != inUseBefore {
		t.Errorf("rendezvous streams in use: %v, want %v (no metrics)", got, inUseBefore)
	}
}

// oneStreamPerPeer returns a resource manager reporting m, allowing one
// rendezvous stream per peer, and a registry holding go-libp2p's
// resource-manager metrics.
func oneStreamPerPeer(t *testing.T, m resourceMetrics) (*prometheus.Registry, network.ResourceManager) {
	t.Helper()
	reg := prometheus.NewRegistry()
	rcmgr.MustRegisterWith(reg)
	l := MachineLimits()
	l.StreamsPerPeer = 1
	mgr, err := newResourceManager(l, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.Close() })
	return reg, mgr
}

// openSecondStream opens a rendezvous stream of a peer, then a second one,
// which mgr must refuse; the first stays open until the test ends.
func openSecondStream(t *testing.T, mgr network.ResourceManager) {
	t.Helper()
	p := peer.ID("a peer")
	first, err := mgr.OpenStream(p, network.DirInbound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Done)
	if err := first.SetProtocol(rendezvous.ProtocolID); err != nil {
		t.Fatal(err)
	}
	second, err := mgr.OpenStream(p, network.DirInbound)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Done()
	if err := second.SetProtocol(rendezvous.ProtocolID); err == nil {
		t.Fatal("a second rendezvous stream of one peer was let through max-streams-per-peer 1")
	}
}

// metric is the series of name in reg with labels, or nil.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			return m
		}
	}
	return nil
}

func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	return metric(t, reg, name, labels).GetGauge().GetValue()
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	var n uint64
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

// BenchmarkResourceManagerStream is what the resource manager does for
// one rendezvous request on its own stream (open, protocol, service, the
// request buffer reserved and released, done), with go-libp2p's full
// metrics (--resource-metrics), with the default ones, and with none (no
// --metrics-addr).
//
//	go test -run '^$' -bench ResourceManagerStream -benchmem ./cmd/rendezvous
func BenchmarkResourceManagerStream(b *testing.B) {
	for _, tc := range []struct {
		name    string
		metrics resourceMetrics
	}{{"full", resourceMetricsFull}, {"default", resourceMetricsCore}, {"off", resourceMetricsOff}} {
		b.Run(tc.name, func(b *testing.B) {
			mgr, err := newResourceManager(MachineLimits(), tc.metrics, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer mgr.Close()
			p := peer.ID("a peer")
			for b.Loop() {
				s, err := mgr.OpenStream(p, network.DirInbound)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.SetProtocol(rendezvous.ProtocolID); err != nil {
					b.Fatal(err)
				}
				if err := s.SetService(rendezvous.ServiceName); err != nil {
					b.Fatal(err)
				}
				if err := s.ReserveMemory(200, network.ReservationPriorityAlways); err != nil {
					b.Fatal(err)
				}
				s.ReleaseMemory(200)
				s.Done()
			}
		})
	}
}
