package interop

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/interop/scripted"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// newCanvasPoint mounts a canvas-like point on a loopback host.
func newCanvasPoint(t *testing.T, opts ...scripted.CanvasPointOption) (*scripted.CanvasPoint, peer.AddrInfo) {
	t.Helper()
	h := testhost.New(t)
	p := scripted.NewCanvasPoint(h, opts...)
	t.Cleanup(p.Close)
	return p, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

// ourCanvasClient is our client speaking /canvas/rendezvous/1.0.0 to point.
func ourCanvasClient(t *testing.T, point peer.AddrInfo) (*client.Client, host.Host) {
	t.Helper()
	return ourClientAt(t, point, client.WithProtocol(rendezvous.CanvasProtocolID))
}

// nextCanvasEvent returns the point's next event about a request of type
// want (absent reads as REGISTER), skipping the others.
func nextCanvasEvent(ctx context.Context, t *testing.T, p *scripted.CanvasPoint, want pb.Message_MessageType) scripted.CanvasEvent {
	t.Helper()
	for {
		select {
		case ev := <-p.Events():
			if ev.Request.GetType() == want {
				return ev
			}
		case <-ctx.Done():
			t.Fatalf("no %s reached the point: %v", want, ctx.Err())
		}
	}
}

// canvasRegister is a REGISTER of h in ns with a standard record.
func canvasRegister(t *testing.T, h host.Host, ns string, ttl uint64) *pb.Message {
	t.Helper()
	m := rustRegister(t, h, ns, scripted.Standard, proto.Uint64(ttl))
	return scripted.CanvasEncode(m)
}

func canvasDiscover(ns string, limit uint64, cookie []byte) *pb.Message {
	return scripted.CanvasEncode(rustDiscover(proto.String(ns), proto.Uint64(limit), cookie))
}

// canvasCookie is a canvas cookie: a row id, 8 bytes big-endian.
func canvasCookie(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func TestCanvasPointClampsOurClientsTTL(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newCanvasPoint(t)
	c, h := ourCanvasClient(t, info)
	results, err := c.Register(ctx, "canvas", 3*time.Hour)
	if err != nil || results[0].TTL != 2*time.Hour {
		t.Fatalf("register: %+v, %v; want 2h granted", results, err)
	}
	ev := nextCanvasEvent(ctx, t, p, pb.Message_REGISTER)
	if ev.Reset != nil || ev.Request.GetRegister().GetTtl() != 3*3600 {
		t.Fatalf("REGISTER: reset %v, request %v", ev.Reset, ev.Request)
	}
	held := p.Book().Live(time.Now(), nil)
	if len(held) != 1 || held[0].Peer != h.ID() || held[0].TTL != 2*time.Hour {
		t.Fatalf("point holds %+v", held)
	}
	if _, kind, err := scripted.OpenRecord(held[0].Record); err != nil || kind != scripted.Standard {
		t.Fatalf("held record: envelope %v, %v; want standard", kind, err)
	}
}

func TestCanvasPointKeepsOurClientRefreshedOnGrantedTTL(t *testing.T) {
	t.Parallel()
	ctx := scriptedCtx(t)
	const ttl = 2 * time.Second
	p, info := newCanvasPoint(t, scripted.WithCanvasMaxTTL(ttl))
	c, h := ourCanvasClient(t, info)
	observer := scripted.NewCanvasClient(testhost.New(t))
	if err := observer.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}

	// Our client asks for the default 2 h: the point clamps it, and the
	// refreshes follow what it granted.
	if results, err := c.Register(ctx, "short", 0); err != nil || results[0].TTL != ttl {
		t.Fatalf("register: %+v, %v; want %v granted", results, err, ttl)
	}
	prev := nextCanvasEvent(ctx, t, p, pb.Message_REGISTER)
	for i := range 6 {
		ev := nextCanvasEvent(ctx, t, p, pb.Message_REGISTER)
		if ev.Reset != nil || ev.Response.GetRegisterResponse().GetTtl() != uint64(ttl/time.Second) {
			t.Fatalf("refresh %d: reset %v, response %v", i, ev.Reset, ev.Response)
		}
		if !ev.At.Before(prev.At.Add(ttl)) {
			t.Fatalf("refresh %d came %v after the last grant: the registration had expired", i, ev.At.Sub(prev.At))
		}
		found := canvasDiscoverOnce(ctx, t, observer, info.ID, "short")
		if len(found) != 1 || found[0].ID != h.ID() {
			t.Fatalf("refresh %d: a canvas client discovers %v, want %s", i, found, h.ID())
		}
		prev = ev
	}
}

// canvasDiscoverOnce is a canvas client's session with one DISCOVER.
func canvasDiscoverOnce(ctx context.Context, t *testing.T, c *scripted.CanvasClient, point peer.ID, ns string) []peer.AddrInfo {
	t.Helper()
	s, err := c.Open(ctx, point)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	found, err := s.Discover(ns, 0).Wait(ctx)
	if err != nil {
		t.Fatalf("canvas discover: %v", err)
	}
	return found
}

func TestCanvasPointUnregistersOurClient(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newCanvasPoint(t)
	c, h := ourCanvasClient(t, info)
	if _, err := c.Register(ctx, "leaving", 0); err != nil {
		t.Fatal(err)
	}
	if results, err := c.Unregister(ctx, "leaving"); err != nil || results.OK() != 1 {
		t.Fatalf("unregister: %+v, %v", results, err)
	}
	ev := nextCanvasEvent(ctx, t, p, pb.Message_UNREGISTER)
	if ev.Reset != nil || ev.Response != nil {
		t.Fatalf("UNREGISTER: reset %v, response %v", ev.Reset, ev.Response)
	}
	if n := p.Book().Count(time.Now(), func(e scripted.Entry) bool { return e.Peer == h.ID() }); n != 0 {
		t.Fatalf("point still holds %d registrations of %s", n, h.ID())
	}
}

func TestCanvasPointBuggyPagingNeverLoopsOurClient(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newCanvasPoint(t)
	ids := seedRegistrations(t, p.Book(), "paged", 70, scripted.Standard)
	c, _ := ourCanvasClient(t, info)

	// Our client asks for 1000; the point returns its 64 newest, with the
	// row id of the oldest of them as cookie. The next page repeats 63 of
	// them: nothing new, our client stops.
	regs, _, err := c.Discover(ctx, "paged", 0)
	if err != nil || len(regs) != 64 {
		t.Fatalf("first discover: %d registrations, %v; want 64", len(regs), err)
	}
	newest := map[peer.ID]bool{}
	for _, id := range ids[6:] {
		newest[id] = true
	}
	seen := map[peer.ID]bool{}
	for _, r := range regs {
		if !newest[r.Peer.ID] || seen[r.Peer.ID] {
			t.Fatalf("%s returned twice or not among the newest 64", r.Peer.ID)
		}
		seen[r.Peer.ID] = true
	}
	first := nextCanvasEvent(ctx, t, p, pb.Message_DISCOVER)
	second := nextCanvasEvent(ctx, t, p, pb.Message_DISCOVER)
	if first.Request.GetDiscover().GetLimit() != client.DefaultDiscoverLimit || first.Request.GetDiscover().Cookie != nil {
		t.Fatalf("first DISCOVER %v", first.Request)
	}
	if got := canvasCookie(second.Request.GetDiscover().GetCookie()); got != 7 || len(second.Response.GetDiscoverResponse().Registrations) != 63 {
		t.Fatalf("second page after row %d held %d registrations; want after row 7, 63", got, len(second.Response.GetDiscoverResponse().Registrations))
	}
	select {
	case ev := <-p.Events():
		t.Fatalf("a third page: %v", ev.Request)
	default:
	}

	// Later calls crawl one row at a time and return nothing new: the six
	// oldest registrations are never reached.
	for i := range 3 {
		regs, _, err := c.Discover(ctx, "paged", 0)
		if err != nil || len(regs) != 0 {
			t.Fatalf("call %d: %d registrations, %v; want none new", i+2, len(regs), err)
		}
	}
}

func TestCanvasPointFindsNothingWhenOurClientAsksEveryNamespace(t *testing.T) {
	// Our client leaves `ns` out to ask for every namespace; canvas reads
	// the literal namespace "" and has nobody there. Our client reports
	// no registrations and no error: it cannot tell.
	ctx := scriptedCtx(t)
	p, info := newCanvasPoint(t)
	seedRegistrations(t, p.Book(), "a", 3, scripted.Standard)
	c, _ := ourCanvasClient(t, info)
	regs, results, err := c.Discover(ctx, "", 0)
	if err != nil || results.OK() != 1 || len(regs) != 0 {
		t.Fatalf("discover all: %d registrations, %+v, %v; want none, no error", len(regs), results, err)
	}
	ev := nextCanvasEvent(ctx, t, p, pb.Message_DISCOVER)
	if ev.Request.GetDiscover().Ns != nil || ev.Reset != nil {
		t.Fatalf("DISCOVER %v, reset %v", ev.Request, ev.Reset)
	}
}

func TestCanvasPointAnswersOurClientForAnUnknownNamespace(t *testing.T) {
	ctx := scriptedCtx(t)
	_, info := newCanvasPoint(t)
	c, _ := ourCanvasClient(t, info)
	regs, results, err := c.Discover(ctx, "nobody", 0)
	if err != nil || results.OK() != 1 || len(regs) != 0 {
		t.Fatalf("unknown namespace: %v, %+v, %v", regs, results, err)
	}
}

func TestCanvasPointServesOurAdvertiseAndFindPeers(t *testing.T) {
	ctx := scriptedCtx(t)
	_, info := newCanvasPoint(t)
	a, ah := ourCanvasClient(t, info)
	b, _ := ourCanvasClient(t, info)
	if ttl, err := a.Advertise(ctx, "disc", discovery.TTL(3*time.Hour)); err != nil || ttl != 2*time.Hour {
		t.Fatalf("advertise: %v, %v; want 2h", ttl, err)
	}
	ch, err := b.FindPeers(ctx, "disc")
	if err != nil {
		t.Fatal(err)
	}
	var found []peer.AddrInfo
	for ai := range ch {
		found = append(found, ai)
	}
	if len(found) != 1 || found[0].ID != ah.ID() || len(found[0].Addrs) == 0 {
		t.Fatalf("found %v, want %s with addresses", found, ah.ID())
	}
}

// ourCanvasPoint is our point serving both protocol IDs.
func ourCanvasPoint(t *testing.T) peer.AddrInfo {
	t.Helper()
	_, addr := newGoPoint(t, rendezvous.ProtocolID, rendezvous.CanvasProtocolID)
	info, err := peer.AddrInfoFromString(addr)
	if err != nil {
		t.Fatal(err)
	}
	return *info
}

func TestCanvasClientAtOurPoint(t *testing.T) {
	ctx := scriptedCtx(t)
	info := ourCanvasPoint(t)
	newCanvas := func() (*scripted.CanvasClient, peer.ID) {
		t.Helper()
		h := testhost.New(t)
		c := scripted.NewCanvasClient(h)
		if err := c.Connect(ctx, info); err != nil {
			t.Fatal(err)
		}
		return c, h.ID()
	}
	a, aID := newCanvas()
	b, _ := newCanvas()

	// Pipelined on one stream: both REGISTERs and a DISCOVER are written
	// before any response is read, and matched by order.
	s, err := a.Open(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	reg := s.Register("canvas", 0)
	regToo := s.Register("canvas-too", 3*3600)
	found := s.Discover("canvas", 0)
	if ttl, err := reg.Wait(ctx); err != nil || ttl != 7200 {
		t.Fatalf("register: %d, %v; want our point's default 7200", ttl, err)
	}
	if ttl, err := regToo.Wait(ctx); err != nil || ttl != 3*3600 {
		t.Fatalf("second register: %d, %v", ttl, err)
	}
	if peers, err := found.Wait(ctx); err != nil || len(peers) != 0 {
		t.Fatalf("discover on the registering stream: %v, %v; want none (itself skipped)", peers, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if peers := canvasDiscoverOnce(ctx, t, b, info.ID, "canvas"); len(peers) != 1 || peers[0].ID != aID || len(peers[0].Addrs) == 0 {
		t.Fatalf("b discovers %v, want %s with addresses", peers, aID)
	}

	// An UNREGISTER followed by a DISCOVER on the same stream goes
	// through; the DISCOVER is answered after it.
	s, err = a.Open(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	s.Unregister("canvas")
	if peers, err := s.Discover("canvas", 0).Wait(ctx); err != nil || len(peers) != 0 {
		t.Fatalf("after unregister: %v, %v", peers, err)
	}
	_ = s.Close()
	if peers := canvasDiscoverOnce(ctx, t, b, info.ID, "canvas"); len(peers) != 0 {
		t.Fatalf("b still discovers %v", peers)
	}
	if peers := canvasDiscoverOnce(ctx, t, b, info.ID, "canvas-too"); len(peers) != 1 || peers[0].ID != aID {
		t.Fatalf("canvas-too: %v", peers)
	}
}

func TestCanvasClientLosesItsTrailingUnregister(t *testing.T) {
	ctx := scriptedCtx(t)
	info := ourCanvasPoint(t)
	for _, tc := range []struct {
		name string
		opts []scripted.CanvasClientOption
		kept bool
	}{
		{"cut off by the close", nil, true},
		{"held open long enough", []scripted.CanvasClientOption{scripted.CanvasKeepsTrailingUnregister()}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testhost.New(t)
			c := scripted.NewCanvasClient(h, tc.opts...)
			if err := c.Connect(ctx, info); err != nil {
				t.Fatal(err)
			}
			s, err := c.Open(ctx, info.ID)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Register("trailing", 0).Wait(ctx); err != nil {
				t.Fatal(err)
			}
			s.Unregister("trailing")
			_ = s.Close() // returns once our point has closed its side
			observer := scripted.NewCanvasClient(testhost.New(t))
			if err := observer.Connect(ctx, info); err != nil {
				t.Fatal(err)
			}
			peers := canvasDiscoverOnce(ctx, t, observer, info.ID, "trailing")
			if kept := len(peers) == 1 && peers[0].ID == h.ID(); kept != tc.kept {
				t.Fatalf("registration kept %v, want %v", kept, tc.kept)
			}
		})
	}
}

func TestCanvasClientAtOurPointRejectsLegacyRecords(t *testing.T) {
	// The mirror of the rust case: canvas verifies every record in the
	// standard envelope and fails the whole DISCOVER on a legacy one, as
	// a rust client registers at our point.
	ctx := scriptedCtx(t)
	info := ourCanvasPoint(t)
	rust := scripted.NewRustClient(testhost.New(t), info)
	if _, err := rust.Register(ctx, "mixed", 0); err != nil {
		t.Fatal(err)
	}
	c := scripted.NewCanvasClient(testhost.New(t))
	if err := c.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	s, err := c.Open(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if peers, err := s.Discover("mixed", 0).Wait(ctx); err == nil {
		t.Fatalf("canvas discovered %v in a namespace holding a legacy record; want a failure", peers)
	}
}

func TestCanvasPointResetsOnErrors(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newCanvasPoint(t)
	h := testhost.New(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  *pb.Message
	}{
		{"cookie of 9 bytes", canvasDiscover("ns", 0, make([]byte, 9))},
		{"legacy envelope", scripted.CanvasEncode(rustRegister(t, h, "ns", scripted.Legacy, nil))},
		{"REGISTER without its message", &pb.Message{}},
		{"namespace of 256 UTF-16 units", canvasDiscover(strings.Repeat("n", 256), 0, nil)},
		{"a response as request", &pb.Message{Type: pb.Message_DISCOVER_RESPONSE.Enum()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := exchangeFrames(ctx, t, h, info.ID, rendezvous.CanvasProtocolID, tc.req)
			if resp != nil || !errors.Is(err, network.ErrReset) {
				t.Fatalf("answered %v, %v; want a reset", resp, err)
			}
			if ev := nextCanvasEvent(ctx, t, p, tc.req.GetType()); ev.Reset == nil {
				t.Fatal("the point reports no reset")
			}
		})
	}
	// 200 "é" are 400 bytes but 200 UTF-16 units: accepted.
	resp, err := exchangeFrames(ctx, t, h, info.ID, rendezvous.CanvasProtocolID, canvasDiscover(strings.Repeat("é", 200), 0, nil))
	if err != nil || resp.GetType() != pb.Message_DISCOVER_RESPONSE {
		t.Fatalf("long UTF-8 namespace: %v, %v", resp, err)
	}
}

func TestCanvasPointClampsTTL(t *testing.T) {
	ctx := scriptedCtx(t)
	_, info := newCanvasPoint(t)
	h := testhost.New(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ask, granted uint64
	}{{0, 7200}, {1, 1}, {3600, 3600}, {7200, 7200}, {3 * 3600, 7200}, {1 << 40, 7200}} {
		resp, err := exchangeFrames(ctx, t, h, info.ID, rendezvous.CanvasProtocolID, canvasRegister(t, h, "ttl", tc.ask))
		if err != nil || resp.GetRegisterResponse().GetTtl() != tc.granted {
			t.Fatalf("ttl %d: %v, %v; want %d granted", tc.ask, resp, err, tc.granted)
		}
	}
}

func TestCanvasPointCapsLimitAt64(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newCanvasPoint(t)
	seedRegistrations(t, p.Book(), "many", 70, scripted.Standard)
	h := testhost.New(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ limit, want uint64 }{{0, 64}, {10, 10}, {64, 64}, {100, 64}, {1000, 64}} {
		resp, err := exchangeFrames(ctx, t, h, info.ID, rendezvous.CanvasProtocolID, canvasDiscover("many", tc.limit, nil))
		if err != nil || uint64(len(resp.GetDiscoverResponse().GetRegistrations())) != tc.want {
			t.Fatalf("limit %d: %v; want %d registrations", tc.limit, err, tc.want)
		}
	}
}

func TestCanvasPointOmitsZeroFields(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newCanvasPoint(t)
	h := testhost.New(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	// A REGISTER in the namespace "", written without `type` or `ns`.
	req := canvasRegister(t, h, "", 0)
	if req.Type != nil || req.Register.Ns != nil || req.Register.Ttl != nil {
		t.Fatalf("canvas codec wrote %v", req)
	}
	resp, err := exchangeFrames(ctx, t, h, info.ID, rendezvous.CanvasProtocolID, req)
	if err != nil {
		t.Fatal(err)
	}
	r := resp.GetRegisterResponse()
	if resp.GetType() != pb.Message_REGISTER_RESPONSE || r.Status != nil || r.GetStatusText() != "OK" || r.GetTtl() != 7200 {
		t.Fatalf("register response %v: want no status, text OK, ttl 7200", resp)
	}
	if held := p.Book().Live(time.Now(), nil); len(held) != 1 || held[0].NS != "" {
		t.Fatalf("point holds %+v, want one registration in \"\"", held)
	}
	// A DISCOVER without `ns` reads the namespace "": the registration is
	// returned without `ns`, with no `status`, and a cookie.
	resp, err = exchangeFrames(ctx, t, h, info.ID, rendezvous.CanvasProtocolID, &pb.Message{
		Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDiscoverResponse()
	if d.Status != nil || len(d.Registrations) != 1 || d.Registrations[0].Ns != nil || d.Registrations[0].Ttl == nil || len(d.Cookie) != 8 {
		t.Fatalf("discover response %v", d)
	}
}

func TestCanvasPointAnswersPipelinedRequestsInOrder(t *testing.T) {
	ctx := scriptedCtx(t)
	_, info := newCanvasPoint(t)
	h := testhost.New(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, info.ID, rendezvous.CanvasProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	unregister := scripted.CanvasEncode(&pb.Message{Type: pb.Message_UNREGISTER.Enum(), Unregister: &pb.Message_Unregister{Ns: proto.String("p")}})
	for _, m := range []*pb.Message{
		canvasRegister(t, h, "p", 60), canvasDiscover("p", 0, nil), unregister, canvasDiscover("p", 0, nil),
	} {
		if err := scripted.WriteFrame(s, m); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.CloseWrite()
	r := bufio.NewReader(s)
	var got []string
	for {
		frame, err := scripted.ReadFrame(r, 1<<20)
		if err != nil {
			break
		}
		m, err := scripted.Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.GetType().String())
		if m.DiscoverResponse != nil {
			got[len(got)-1] += strings.Repeat("+", len(m.DiscoverResponse.Registrations))
		}
	}
	if strings.Join(got, " ") != "REGISTER_RESPONSE DISCOVER_RESPONSE+ DISCOVER_RESPONSE" {
		t.Fatalf("answers %v: want a register, a discover with one, a discover with none", got)
	}
}

func TestCanvasPointPagingRepeatsAllButOne(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newCanvasPoint(t)
	seedRegistrations(t, p.Book(), "rows", 5, scripted.Standard)
	h := testhost.New(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	var cookie []byte
	for _, want := range []struct{ count, cookie int }{{3, 3}, {2, 4}, {1, 5}, {0, 5}} {
		resp, err := exchangeFrames(ctx, t, h, info.ID, rendezvous.CanvasProtocolID, canvasDiscover("rows", 3, cookie))
		if err != nil {
			t.Fatal(err)
		}
		d := resp.GetDiscoverResponse()
		cookie = d.GetCookie()
		if len(d.Registrations) != want.count || canvasCookie(cookie) != uint64(want.cookie) {
			t.Fatalf("page: %d registrations and cookie %d, want %d and %d", len(d.Registrations), canvasCookie(cookie), want.count, want.cookie)
		}
	}
}

func TestCanvasPointAcceptsRecordsOfOtherPeers(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newCanvasPoint(t)
	h, other := testhost.New(t), testhost.New(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	rec, err := scripted.SealRecord(other, scripted.Standard)
	if err != nil {
		t.Fatal(err)
	}
	req := canvasRegister(t, h, "forged", 0)
	req.Register.SignedPeerRecord = rec
	if resp, err := exchangeFrames(ctx, t, h, info.ID, rendezvous.CanvasProtocolID, req); err != nil || resp.GetRegisterResponse().GetTtl() != 7200 {
		t.Fatalf("register of another peer's record: %v, %v; want granted", resp, err)
	}
	held := p.Book().Live(time.Now(), nil)
	if len(held) != 1 || held[0].Peer != h.ID() {
		t.Fatalf("point holds %+v, want the record under the sender", held)
	}
	if rec, _, err := scripted.OpenRecord(held[0].Record); err != nil || rec.PeerID != other.ID() {
		t.Fatalf("held record of %v, %v; want %s", rec, err, other.ID())
	}
}

func TestCanvasClientOmitsZeroFields(t *testing.T) {
	ctx := scriptedCtx(t)
	point := testhost.New(t)
	frames := make(chan *pb.Message, 8)
	point.SetStreamHandler(rendezvous.CanvasProtocolID, func(s network.Stream) {
		defer s.Close()
		r := bufio.NewReader(s)
		for {
			frame, err := scripted.ReadFrame(r, 1<<20)
			if err != nil {
				return
			}
			m, _ := scripted.Decode(frame)
			frames <- m
		}
	})
	c := scripted.NewCanvasClient(testhost.New(t), scripted.CanvasKeepsTrailingUnregister())
	info := peer.AddrInfo{ID: point.ID(), Addrs: point.Addrs()}
	if err := c.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	s, err := c.Open(ctx, point.ID())
	if err != nil {
		t.Fatal(err)
	}
	s.Register("z", 0)
	s.Discover("z", 0)
	s.Unregister("z")
	_ = s.Close()
	reg, disc, unreg := <-frames, <-frames, <-frames
	if reg.Type != nil || reg.Register.Ttl != nil || reg.Register.GetNs() != "z" {
		t.Fatalf("REGISTER %v: want no type, no ttl", reg)
	}
	if rec, kind, err := scripted.OpenRecord(reg.Register.SignedPeerRecord); err != nil || kind != scripted.Standard || !strings.HasSuffix(rec.Addrs[0].String(), "/p2p/"+rec.PeerID.String()) {
		t.Fatalf("record %v (%v, %v): want the standard envelope, addresses ending in /p2p/", rec, kind, err)
	}
	if disc.GetType() != pb.Message_DISCOVER || disc.Discover.Limit != nil || disc.Discover.Cookie != nil {
		t.Fatalf("DISCOVER %v: want no limit, no cookie", disc)
	}
	if unreg.GetType() != pb.Message_UNREGISTER || unreg.Unregister.GetNs() != "z" {
		t.Fatalf("UNREGISTER %v", unreg)
	}
}
