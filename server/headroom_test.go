package server_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
)

// TestCrowdedPointKeepsRoom: a flood from many networks fills the point to
// its crowded mark; from then on its networks holding their share get no
// new registration, while new networks still register up to the cap, and
// every refresh succeeds. Each refusal is counted by its reason.
func TestCrowdedPointKeepsRoom(t *testing.T) {
	rc := noRates(server.DefaultResources())
	rc.MaxRegistrations, rc.CrowdedPercent, rc.CrowdedShare = 200, 50, 10
	rc.MaxRegistrationsPerIPv4Net = 40
	reg := prometheus.NewRegistry()
	p := newPoint(t, server.WithResources(rc), server.WithMetricsTracer(server.NewMetricsTracer(reg)))
	ids := identities(t, 400)
	attack, good := ids[:300], ids[300:]
	// Ten attacking networks of 30 identities each.
	accepted := 0
	for i, id := range attack {
		r := p.registerAs(id, fmt.Sprintf("198.51.%d.%d", 100+i%10, 1+i/10), "ns")
		switch {
		case r.GetStatus() == pb.Message_OK:
			accepted++
		case r.GetStatus() != pb.Message_E_UNAVAILABLE || r.GetStatusText() != "point is nearly full and your network holds its share (10 registrations)":
			t.Fatalf("attacker %d: %v %q", i, r.GetStatus(), r.GetStatusText())
		}
	}
	if accepted != 100 {
		t.Fatalf("attack got %d registrations, want the crowded mark 100", accepted)
	}
	// Newcomers from other networks still get in, up to their share
	// each, until the point is full.
	for i, id := range good {
		r := p.registerAs(id, fmt.Sprintf("192.0.%d.1", i/5), "ns")
		if r.GetStatus() != pb.Message_OK {
			t.Fatalf("newcomer %d: %v %q", i, r.GetStatus(), r.GetStatusText())
		}
	}
	// The attackers' registrations are refreshed all the same.
	for i, id := range attack[:accepted] {
		if r := p.registerAs(id, fmt.Sprintf("198.51.%d.%d", 100+i%10, 1+i/10), "ns"); r.GetStatus() != pb.Message_OK {
			t.Fatalf("refresh of %d: %v %q", i, r.GetStatus(), r.GetStatusText())
		}
	}
	want := map[string]float64{"REGISTER/crowded": 200}
	if got := refusals(t, reg); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("refusals counted %v, want %v", got, want)
	}
}

// refusals reads libp2p_rendezvous_refusals_total from reg, by "type/reason".
func refusals(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "libp2p_rendezvous_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["type"]+"/"+labels["reason"]] = m.GetCounter().GetValue()
		}
	}
	return out
}
