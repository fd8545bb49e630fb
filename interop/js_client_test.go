package interop

import (
	"encoding/hex"
	"testing"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// newGoPoint is our rendezvous point on loopback, serving ids.
func newGoPoint(t *testing.T, ids ...protocol.ID) (host.Host, string) {
	t.Helper()
	h := testhost.New(t)
	st := memory.New()
	srv, err := server.New(h, st, server.WithProtocols(ids...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(); _ = st.Close() })
	return h, h.Addrs()[0].String() + "/p2p/" + h.ID().String()
}

func TestJSClientAtGoPoint(t *testing.T) {
	needJS(t)
	_, addr := newGoPoint(t, rendezvous.ProtocolID)
	a, b := startJSClient(t), startJSClient(t)
	a.do(map[string]any{"op": "connect", "multiaddr": addr}, nil)
	b.do(map[string]any{"op": "connect", "multiaddr": addr}, nil)

	var reg struct {
		TTL uint64 `json:"ttl"`
	}
	a.do(map[string]any{"op": "register", "ns": "interop", "ttl": 7200}, &reg)
	if reg.TTL != 7200 {
		t.Fatalf("JS client was granted %d, want 7200", reg.TTL)
	}
	// The JS client checks each record's signature and namespace.
	found := b.discover("interop", 10)
	if len(found) != 1 || found[0].PeerID != a.id.String() || found[0].NS != "interop" || len(found[0].Multiaddrs) == 0 {
		t.Fatalf("JS client discovered %+v, want %s in interop with addresses", found, a.id)
	}
	if got := b.discover("unknown", 10); len(got) != 0 {
		t.Fatalf("unknown namespace gave %v", peerIDs(got))
	}

	// The JS client loses an UNREGISTER that ends its stream; "flush"
	// follows it with a DISCOVER on the same stream.
	a.do(map[string]any{"op": "unregister", "ns": "interop", "flush": true}, nil)
	if got := b.discover("interop", 10); len(got) != 0 {
		t.Fatalf("after unregister JS client discovered %v", peerIDs(got))
	}
}

// rawResponse is a response as client.mjs's raw op decodes it.
type rawResponse struct {
	Type          string           `json:"type"`
	Status        string           `json:"status"`
	TTL           uint64           `json:"ttl"`
	Cookie        string           `json:"cookie"`
	Count         int              `json:"count"`
	Registrations []jsRegistration `json:"registrations"`
}

func TestJSClientPipelinesOnOneStream(t *testing.T) {
	needJS(t)
	_, addr := newGoPoint(t, rendezvous.ProtocolID)
	a := startJSClient(t)
	a.do(map[string]any{"op": "connect", "multiaddr": addr}, nil)

	// The canvas client's own pipelining: three requests on one stream.
	var piped struct {
		Results []result `json:"results"`
	}
	a.do(map[string]any{"op": "pipeline", "concurrent": true, "requests": []map[string]any{
		{"op": "register", "ns": "piped", "ttl": 7200},
		{"op": "discover", "ns": "piped"},
		{"op": "register", "ns": "piped-too", "ttl": 7200},
	}}, &piped)
	if len(piped.Results) != 3 {
		t.Fatalf("%d results, want 3", len(piped.Results))
	}
	for i, r := range piped.Results {
		if !r.OK {
			t.Fatalf("pipelined request %d: %s", i, r.Error)
		}
	}

	// Written all at once with the canvas codec, which omits type (REGISTER
	// is 0) and every zero field: answered in order, none for UNREGISTER.
	var raw struct {
		Responses []rawResponse `json:"responses"`
	}
	a.do(map[string]any{"op": "raw", "requests": []map[string]any{
		{"type": "REGISTER", "ns": "raw", "ttl": 7200},
		{"type": "DISCOVER", "ns": "raw", "limit": 10},
		{"type": "UNREGISTER", "ns": "raw"},
		{"type": "DISCOVER", "ns": "raw", "limit": 10},
	}}, &raw)
	r := raw.Responses
	if len(r) != 3 || r[0].Type != "REGISTER_RESPONSE" || r[0].Status != "OK" || r[0].TTL != 7200 ||
		r[1].Type != "DISCOVER_RESPONSE" || r[1].Status != "OK" || r[1].Count != 1 || r[2].Count != 0 {
		t.Fatalf("raw responses %+v, want OK register, 1 discovered, 0 after unregister", r)
	}
	if reg := r[1].Registrations[0]; reg.PeerID != a.id.String() || reg.NS != "raw" || reg.TTL == nil || *reg.TTL != 7200 {
		t.Fatalf("registration %+v, want %s in raw with ttl 7200", reg, a.id)
	}
	cookie, err := hex.DecodeString(r[1].Cookie)
	if err != nil || len(cookie) != 8+len("raw") || string(cookie[8:]) != "raw" {
		t.Fatalf("cookie %q, want 8 bytes and the namespace", r[1].Cookie)
	}
}

func TestJSClientOnCanvasProtocolID(t *testing.T) {
	needJS(t)
	_, addr := newGoPoint(t, rendezvous.ProtocolID, rendezvous.CanvasProtocolID)
	a := startJSClient(t, "--protocol", string(rendezvous.CanvasProtocolID))
	b := startJSClient(t, "--protocol", string(rendezvous.CanvasProtocolID))
	for _, c := range []*jsClient{a, b} {
		c.do(map[string]any{"op": "connect", "multiaddr": addr}, nil)
	}
	a.do(map[string]any{"op": "register", "ns": "canvas", "ttl": 7200}, nil)
	if found := b.discover("canvas", 10); len(found) != 1 || found[0].PeerID != a.id.String() {
		t.Fatalf("over the canvas ID: %v, want %s", peerIDs(found), a.id)
	}
}
