package interop

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/interop/scripted"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// scriptedCtx bounds a test of the scripted peers.
func scriptedCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newRustPoint mounts a rust-like point on a loopback host.
func newRustPoint(t *testing.T, opts ...scripted.RustPointOption) (*scripted.RustPoint, peer.AddrInfo) {
	t.Helper()
	h := testhost.New(t)
	p := scripted.NewRustPoint(h, opts...)
	t.Cleanup(p.Close)
	return p, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

// ourClientAt is our client on a host of its own, with point as its only
// point; the TTL policy leaves the range to the point.
func ourClientAt(t *testing.T, point peer.AddrInfo, opts ...client.Option) (*client.Client, host.Host) {
	t.Helper()
	h := testhost.New(t)
	base := []client.Option{client.WithPoints(point), client.WithTTLPolicy(wideTTL), client.WithRequestTimeout(5 * time.Second)}
	c, err := client.New(h, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, h
}

// nextRustEvent returns the point's next event about a request of type
// want, skipping the others.
func nextRustEvent(ctx context.Context, t *testing.T, p *scripted.RustPoint, want pb.Message_MessageType) scripted.RustEvent {
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

// seedRegistrations puts n registrations of peers with no host in ns, each
// signed in the given envelope, and returns their IDs in the order
// registered.
func seedRegistrations(t *testing.T, book *scripted.Book, ns string, n int, kind scripted.Envelope) []peer.ID {
	t.Helper()
	ids := make([]peer.ID, n)
	for i := range ids {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ids[i], _ = peer.IDFromPrivateKey(key)
		addrs := []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 20000+i))}
		seal := rendezvous.SealPeerRecord
		if kind == scripted.Legacy {
			seal = rendezvous.SealLegacyPeerRecord
		}
		rec, err := seal(key, addrs, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		book.Put(ns, ids[i], rec, 2*time.Hour, time.Now())
	}
	return ids
}

// exchangeFrames writes m on a new stream from h to point and reads one
// answer; the error is the one of that read when none comes.
func exchangeFrames(ctx context.Context, t *testing.T, h host.Host, point peer.ID, id protocol.ID, m ...*pb.Message) (*pb.Message, error) {
	t.Helper()
	s, err := h.NewStream(ctx, point, id)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dl, _ := ctx.Deadline()
	_ = s.SetDeadline(dl)
	for _, msg := range m {
		if err := scripted.WriteFrame(s, msg); err != nil {
			t.Fatal(err)
		}
	}
	frame, err := scripted.ReadFrame(bufio.NewReader(s), 1<<20)
	if err != nil {
		return nil, err
	}
	return scripted.Decode(frame)
}

// rustRegister is a REGISTER of h in ns with its record in the given
// envelope; ttl nil writes none.
func rustRegister(t *testing.T, h host.Host, ns string, kind scripted.Envelope, ttl *uint64) *pb.Message {
	t.Helper()
	rec, err := scripted.SealRecord(h, kind)
	if err != nil {
		t.Fatal(err)
	}
	return &pb.Message{
		Type:     pb.Message_REGISTER.Enum(),
		Register: &pb.Message_Register{Ns: proto.String(ns), SignedPeerRecord: rec, Ttl: ttl},
	}
}

func rustDiscover(ns *string, limit *uint64, cookie []byte) *pb.Message {
	return &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{Ns: ns, Limit: limit, Cookie: cookie}}
}

func TestRustPointGrantsOurClientInLegacyEnvelope(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newRustPoint(t)
	c, h := ourClientAt(t, info)

	results, err := c.Register(ctx, "rust", 0)
	if err != nil || results[0].TTL != 2*time.Hour {
		t.Fatalf("register: %+v, %v; want 2h granted", results, err)
	}
	// The standard envelope is dropped unanswered; the retry in the legacy
	// one is granted.
	first := nextRustEvent(ctx, t, p, pb.Message_REGISTER)
	if first.Envelope != scripted.Standard || first.Dropped == nil || first.Response != nil {
		t.Fatalf("first REGISTER: envelope %v, dropped %v, response %v; want a standard one dropped", first.Envelope, first.Dropped, first.Response)
	}
	retry := nextRustEvent(ctx, t, p, pb.Message_REGISTER)
	if retry.Envelope != scripted.Legacy || retry.Response.GetRegisterResponse().GetStatus() != rendezvous.StatusOK {
		t.Fatalf("retry: envelope %v, response %v; want a legacy one granted", retry.Envelope, retry.Response)
	}
	held := p.Book().Live(time.Now(), nil)
	if len(held) != 1 || held[0].Peer != h.ID() || held[0].NS != "rust" {
		t.Fatalf("point holds %+v, want %s in rust", held, h.ID())
	}
	if _, kind, err := scripted.OpenRecord(held[0].Record); err != nil || kind != scripted.Legacy {
		t.Fatalf("held record: envelope %v, %v; want legacy", kind, err)
	}

	// The point is remembered: the next REGISTER is legacy at once.
	if _, err := c.RegisterAt(ctx, info.ID, "rust-too", 0); err != nil {
		t.Fatal(err)
	}
	if ev := nextRustEvent(ctx, t, p, pb.Message_REGISTER); ev.Envelope != scripted.Legacy || ev.Dropped != nil {
		t.Fatalf("later REGISTER: envelope %v, dropped %v; want legacy at once", ev.Envelope, ev.Dropped)
	}
	select {
	case ev := <-p.Events():
		t.Fatalf("unexpected request %v", ev.Request)
	default:
	}
}

func TestRustPointKeepsOurClientRefreshedOnGrantedTTL(t *testing.T) {
	t.Parallel()
	ctx := scriptedCtx(t)
	const ttl = 2 * time.Second
	p, info := newRustPoint(t, scripted.WithRustMinTTL(time.Second))
	c, h := ourClientAt(t, info)
	observer := scripted.NewRustClient(testhost.New(t), info)

	if results, err := c.Register(ctx, "short", ttl); err != nil || results[0].TTL != ttl {
		t.Fatalf("register: %+v, %v; want %v granted", results, err, ttl)
	}
	nextRustEvent(ctx, t, p, pb.Message_REGISTER) // the standard envelope, dropped
	prev := nextRustEvent(ctx, t, p, pb.Message_REGISTER)
	// Six refreshes span three TTLs: each must come, in the legacy
	// envelope, before the registration it renews runs out.
	for i := range 6 {
		ev := nextRustEvent(ctx, t, p, pb.Message_REGISTER)
		if ev.Envelope != scripted.Legacy || ev.Response.GetRegisterResponse().GetTtl() != uint64(ttl/time.Second) {
			t.Fatalf("refresh %d: envelope %v, response %v", i, ev.Envelope, ev.Response)
		}
		if !ev.At.Before(prev.At.Add(ttl)) {
			t.Fatalf("refresh %d came %v after the last grant: the registration had expired", i, ev.At.Sub(prev.At))
		}
		regs, _, err := observer.Discover(ctx, scripted.RustDiscover{NS: proto.String("short")})
		if err != nil || len(regs) != 1 || regs[0].Peer.ID != h.ID() {
			t.Fatalf("refresh %d: a rust client discovers %+v, %v; want %s", i, regs, err, h.ID())
		}
		prev = ev
	}
}

func TestRustPointUnregistersOurClient(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newRustPoint(t)
	c, h := ourClientAt(t, info)
	if _, err := c.Register(ctx, "leaving", 0); err != nil {
		t.Fatal(err)
	}
	results, err := c.Unregister(ctx, "leaving")
	if err != nil || results.OK() != 1 {
		t.Fatalf("unregister: %+v, %v", results, err)
	}
	ev := nextRustEvent(ctx, t, p, pb.Message_UNREGISTER)
	if ev.Dropped != nil || ev.Response != nil || ev.Request.GetUnregister().GetNs() != "leaving" {
		t.Fatalf("UNREGISTER: dropped %v, response %v, request %v", ev.Dropped, ev.Response, ev.Request)
	}
	if n := p.Book().Count(time.Now(), func(e scripted.Entry) bool { return e.Peer == h.ID() }); n != 0 {
		t.Fatalf("point still holds %d registrations of %s", n, h.ID())
	}
}

func TestRustPointPagesOurClientWithCookies(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newRustPoint(t)
	ids := seedRegistrations(t, p.Book(), "paged", 25, scripted.Legacy)
	seedRegistrations(t, p.Book(), "other", 3, scripted.Legacy)
	c, _ := ourClientAt(t, info)

	// Each Discover asks for 10: the point pages with its cookies, and
	// our client keeps the cookie between calls.
	seen := map[peer.ID]int{}
	var sizes []int
	for range 6 {
		regs, _, err := c.Discover(ctx, "paged", 10)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(regs))
		if len(regs) == 0 {
			break
		}
		for _, r := range regs {
			seen[r.Peer.ID]++
		}
	}
	if fmt.Sprint(sizes) != "[10 10 5 0]" {
		t.Fatalf("pages of %v, want [10 10 5 0]", sizes)
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("%s found %d times, want once", id, seen[id])
		}
	}
	// On the wire: `limit` 10 every time, and after the first DISCOVER the
	// cookie the point gave, 8 bytes and the namespace.
	for i := range 5 {
		ev := nextRustEvent(ctx, t, p, pb.Message_DISCOVER)
		d := ev.Request.GetDiscover()
		if ev.Dropped != nil || d.Limit == nil || d.GetLimit() != 10 {
			t.Fatalf("DISCOVER %d: dropped %v, limit %v", i, ev.Dropped, d.Limit)
		}
		if (i == 0) != (d.Cookie == nil) || (i > 0 && string(d.Cookie[8:]) != "paged") {
			t.Fatalf("DISCOVER %d: cookie %x", i, d.Cookie)
		}
	}
}

func TestRustPointListsEveryNamespaceToOurClient(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newRustPoint(t)
	want := map[peer.ID]string{}
	for _, ns := range []string{"a", "b"} {
		for _, id := range seedRegistrations(t, p.Book(), ns, 3, scripted.Legacy) {
			want[id] = ns
		}
	}
	c, _ := ourClientAt(t, info)
	regs, _, err := c.Discover(ctx, "", 0)
	if err != nil || len(regs) != len(want) {
		t.Fatalf("discover all: %d registrations, %v; want %d", len(regs), err, len(want))
	}
	for _, r := range regs {
		if want[r.Peer.ID] != r.Namespace {
			t.Fatalf("%s in %q, want %q", r.Peer.ID, r.Namespace, want[r.Peer.ID])
		}
	}
	ev := nextRustEvent(ctx, t, p, pb.Message_DISCOVER)
	if d := ev.Request.GetDiscover(); d.Ns != nil || d.Cookie != nil || d.GetLimit() != client.DefaultDiscoverLimit {
		t.Fatalf("DISCOVER for every namespace: %v; want no ns, no cookie, limit %d", d, client.DefaultDiscoverLimit)
	}
	// The cookie for every namespace is 8 bytes; with it, nothing is new.
	again, _, err := c.Discover(ctx, "", 0)
	if err != nil || len(again) != 0 {
		t.Fatalf("second discover all: %d, %v", len(again), err)
	}
}

func TestRustPointAnswersOurClientForAnUnknownNamespace(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newRustPoint(t)
	c, _ := ourClientAt(t, info)
	regs, results, err := c.Discover(ctx, "nobody", 0)
	if err != nil || len(regs) != 0 || results.OK() != 1 {
		t.Fatalf("unknown namespace: %v, %+v, %v", regs, results, err)
	}
	resp := nextRustEvent(ctx, t, p, pb.Message_DISCOVER).Response.GetDiscoverResponse()
	if resp.GetStatus() != rendezvous.StatusOK || string(resp.GetCookie()[8:]) != "nobody" {
		t.Fatalf("point answered %v", resp)
	}
}

func TestRustPointServesOurAdvertiseAndFindPeers(t *testing.T) {
	ctx := scriptedCtx(t)
	_, info := newRustPoint(t)
	a, ah := ourClientAt(t, info)
	b, _ := ourClientAt(t, info)
	if ttl, err := a.Advertise(ctx, "disc"); err != nil || ttl != 2*time.Hour {
		t.Fatalf("advertise: %v, %v", ttl, err)
	}
	ch, err := b.FindPeers(ctx, "disc", discovery.Limit(10))
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

func TestRustClientAtOurPoint(t *testing.T) {
	ctx := scriptedCtx(t)
	_, addr := newGoPoint(t, rendezvous.ProtocolID)
	info, err := peer.AddrInfoFromString(addr)
	if err != nil {
		t.Fatal(err)
	}
	newRust := func() (*scripted.RustClient, peer.ID) {
		h := testhost.New(t)
		return scripted.NewRustClient(h, *info), h.ID()
	}
	registered := map[peer.ID]bool{}
	var first *scripted.RustClient
	var firstID peer.ID
	for range 5 {
		c, id := newRust()
		granted, err := c.Register(ctx, "flow", 0) // no ttl: the point's default
		if err != nil || granted != 2*time.Hour {
			t.Fatalf("rust register: %v, %v", granted, err)
		}
		registered[id] = true
		if first == nil {
			first, firstID = c, id
		}
	}
	observer, _ := newRust()

	// Pages of 2, following cookies that the rust client parses.
	pageAll := func(q scripted.RustDiscover) map[peer.ID]int {
		t.Helper()
		found := map[peer.ID]int{}
		for range 10 {
			regs, cookie, err := observer.Discover(ctx, q)
			if err != nil {
				t.Fatalf("rust discover %v: %v", q.NS, err)
			}
			if len(regs) == 0 {
				return found
			}
			for _, r := range regs {
				if r.NS != "flow" || r.TTL <= 0 || r.TTL > 2*time.Hour || len(r.Peer.Addrs) == 0 {
					t.Fatalf("registration %+v", r)
				}
				found[r.Peer.ID]++
			}
			q.Cookie = cookie
		}
		t.Fatal("paging does not end")
		return nil
	}
	for _, q := range []scripted.RustDiscover{
		{NS: proto.String("flow"), Limit: proto.Uint64(2)},
		{Limit: proto.Uint64(2)}, // every namespace
	} {
		found := pageAll(q)
		if len(found) != len(registered) {
			t.Fatalf("ns %v: found %d peers, want %d", q.NS, len(found), len(registered))
		}
		for id, n := range found {
			if !registered[id] || n != 1 {
				t.Fatalf("ns %v: %s found %d times", q.NS, id, n)
			}
		}
	}

	if err := first.Unregister(ctx, "flow"); err != nil {
		t.Fatalf("rust unregister: %v", err)
	}
	found := pageAll(scripted.RustDiscover{NS: proto.String("flow")})
	if _, ok := found[firstID]; ok || len(found) != len(registered)-1 {
		t.Fatalf("after unregistering %s: found %v", firstID, found)
	}
}

func TestRustClientAtOurPointCannotReadStandardRecords(t *testing.T) {
	// Our point serves each record in the envelope it was registered in.
	// rust's client fails a whole DISCOVER_RESPONSE holding one standard
	// record: in a namespace shared with peers registering standard
	// records (ours, canvas'), rust clients find nobody.
	ctx := scriptedCtx(t)
	_, addr := newGoPoint(t, rendezvous.ProtocolID)
	info, err := peer.AddrInfoFromString(addr)
	if err != nil {
		t.Fatal(err)
	}
	ours, _ := ourClientAt(t, *info)
	if _, err := ours.Register(ctx, "mixed", 0); err != nil {
		t.Fatal(err)
	}
	h := testhost.New(t)
	rust := scripted.NewRustClient(h, *info)
	if _, err := rust.Register(ctx, "mixed", 0); err != nil {
		t.Fatal(err)
	}
	_, _, err = rust.Discover(ctx, scripted.RustDiscover{NS: proto.String("mixed")})
	if !errors.Is(err, scripted.ErrRustMalformed) || !strings.Contains(err.Error(), "routing-state") {
		t.Fatalf("rust discover of a mixed namespace: %v, want a decoding failure on the standard record", err)
	}
}

func TestRustPointDropsWhatItsCodecRefuses(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newRustPoint(t)
	h := testhost.New(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	legacy := func(mutate func(*pb.Message)) *pb.Message {
		m := rustRegister(t, h, "ns", scripted.Legacy, nil)
		mutate(m)
		return m
	}
	for _, tc := range []struct {
		name string
		req  *pb.Message
	}{
		{"standard envelope", rustRegister(t, h, "ns", scripted.Standard, nil)},
		{"REGISTER without type", legacy(func(m *pb.Message) { m.Type = nil })},
		{"REGISTER without ns", legacy(func(m *pb.Message) { m.Register.Ns = nil })},
		{"REGISTER without record", legacy(func(m *pb.Message) { m.Register.SignedPeerRecord = nil })},
		{"namespace of 256 bytes", legacy(func(m *pb.Message) { m.Register.Ns = proto.String(strings.Repeat("n", 256)) })},
		{"empty cookie", rustDiscover(proto.String("ns"), nil, []byte{})},
		{"cookie of 7 bytes", rustDiscover(proto.String("ns"), nil, make([]byte, 7))},
		{"UNREGISTER without ns", &pb.Message{Type: pb.Message_UNREGISTER.Enum(), Unregister: &pb.Message_Unregister{}}},
		{"a response as request", &pb.Message{Type: pb.Message_REGISTER_RESPONSE.Enum(), RegisterResponse: &pb.Message_RegisterResponse{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := exchangeFrames(ctx, t, h, info.ID, rendezvous.ProtocolID, tc.req)
			if resp != nil || err == nil {
				t.Fatalf("answered %v, want the stream closed unanswered", resp)
			}
			select {
			case ev := <-p.Events():
				if ev.Dropped == nil {
					t.Fatal("the point reports no drop")
				}
			case <-ctx.Done():
				t.Fatal("the point reports nothing")
			}
		})
	}
	if n := p.Book().Count(time.Now(), nil); n != 0 {
		t.Fatalf("point holds %d registrations", n)
	}
}

func TestRustPointRegisterStatuses(t *testing.T) {
	ctx := scriptedCtx(t)
	_, info := newRustPoint(t)
	h := testhost.New(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	other := testhost.New(t)
	otherRecord, err := scripted.SealRecord(other, scripted.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	forOther := rustRegister(t, h, "ns", scripted.Legacy, nil)
	forOther.Register.SignedPeerRecord = otherRecord
	for _, tc := range []struct {
		name   string
		req    *pb.Message
		status rendezvous.Status
		ttl    uint64
	}{
		{"no ttl gets 2h", rustRegister(t, h, "ns", scripted.Legacy, nil), rendezvous.StatusOK, 7200},
		{"2h", rustRegister(t, h, "ns", scripted.Legacy, proto.Uint64(7200)), rendezvous.StatusOK, 7200},
		{"72h", rustRegister(t, h, "ns", scripted.Legacy, proto.Uint64(72*3600)), rendezvous.StatusOK, 72 * 3600},
		{"below 2h", rustRegister(t, h, "ns", scripted.Legacy, proto.Uint64(7199)), rendezvous.StatusInvalidTTL, 0},
		{"above 72h", rustRegister(t, h, "ns", scripted.Legacy, proto.Uint64(72*3600+1)), rendezvous.StatusInvalidTTL, 0},
		{"0", rustRegister(t, h, "ns", scripted.Legacy, proto.Uint64(0)), rendezvous.StatusInvalidTTL, 0},
		{"record of another peer", forOther, rendezvous.StatusNotAuthorized, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := exchangeFrames(ctx, t, h, info.ID, rendezvous.ProtocolID, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			r := resp.GetRegisterResponse()
			if r.Status == nil || r.GetStatus() != tc.status || r.StatusText != nil {
				t.Fatalf("answered %v, want status %v and no text", r, tc.status)
			}
			if (tc.ttl == 0) != (r.Ttl == nil) || r.GetTtl() != tc.ttl {
				t.Fatalf("ttl %v, want %d (absent on error)", r.Ttl, tc.ttl)
			}
		})
	}
}

func TestRustPointCookies(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newRustPoint(t)
	seedRegistrations(t, p.Book(), "a", 3, scripted.Legacy)
	seedRegistrations(t, p.Book(), "b", 2, scripted.Legacy)
	h := testhost.New(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	ask := func(ns *string, limit *uint64, cookie []byte) *pb.Message_DiscoverResponse {
		t.Helper()
		resp, err := exchangeFrames(ctx, t, h, info.ID, rendezvous.ProtocolID, rustDiscover(ns, limit, cookie))
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetDiscoverResponse()
	}
	a := ask(proto.String("a"), proto.Uint64(1), nil)
	if len(a.Registrations) != 1 || len(a.Cookie) != 9 || string(a.Cookie[8:]) != "a" {
		t.Fatalf("first page of a: %d registrations, cookie %x", len(a.Registrations), a.Cookie)
	}
	all := ask(nil, nil, nil)
	if len(all.Registrations) != 5 || len(all.Cookie) != 8 {
		t.Fatalf("every namespace: %d registrations, cookie %x", len(all.Registrations), all.Cookie)
	}
	unknown := append([]byte{1, 2, 3, 4, 5, 6, 7, 8}, "a"...)
	for _, tc := range []struct {
		name   string
		ns     *string
		limit  *uint64
		cookie []byte
		status rendezvous.Status
		count  int
	}{
		{"cookie of a in b", proto.String("b"), nil, a.Cookie, rendezvous.StatusInvalidCookie, 0},
		{"cookie of a for every namespace", nil, nil, a.Cookie, rendezvous.StatusInvalidCookie, 0},
		{"cookie of a continues a", proto.String("a"), nil, a.Cookie, rendezvous.StatusOK, 2},
		{"cookie of every namespace in a", proto.String("a"), nil, all.Cookie, rendezvous.StatusOK, 0},
		{"unknown cookie starts over", proto.String("a"), nil, unknown, rendezvous.StatusOK, 3},
		{"limit 0 returns nothing", proto.String("a"), proto.Uint64(0), nil, rendezvous.StatusOK, 0},
		{"ns empty is a namespace", proto.String(""), nil, nil, rendezvous.StatusOK, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(tc.ns, tc.limit, tc.cookie)
			if r.GetStatus() != tc.status || len(r.Registrations) != tc.count {
				t.Fatalf("status %v with %d registrations, want %v with %d", r.GetStatus(), len(r.Registrations), tc.status, tc.count)
			}
			if (tc.status == rendezvous.StatusOK) != (r.Cookie != nil) {
				t.Fatalf("cookie %x with status %v", r.Cookie, r.GetStatus())
			}
		})
	}
}

func TestRustPointReadsOneRequestPerStream(t *testing.T) {
	ctx := scriptedCtx(t)
	p, info := newRustPoint(t)
	h := testhost.New(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, info.ID, rendezvous.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	for range 2 {
		if err := scripted.WriteFrame(s, rustDiscover(proto.String("x"), nil, nil)); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(s)
	if _, err := scripted.ReadFrame(r, 1<<20); err != nil {
		t.Fatalf("first answer: %v", err)
	}
	if _, err := scripted.ReadFrame(r, 1<<20); err == nil {
		t.Fatal("the second request on the stream was answered")
	}
	nextRustEvent(ctx, t, p, pb.Message_DISCOVER)
	select {
	case ev := <-p.Events():
		t.Fatalf("point read a second request: %v", ev.Request)
	default:
	}
}

// cannedPoint answers every stream on h with resp after reading one
// request.
func cannedPoint(h host.Host, resp *pb.Message) {
	h.SetStreamHandler(rendezvous.ProtocolID, func(s network.Stream) {
		defer s.Close()
		if _, err := scripted.ReadFrame(bufio.NewReader(s), 1<<20); err == nil {
			_ = scripted.WriteFrame(s, resp)
		}
	})
}

func TestRustClientDecodesStrictly(t *testing.T) {
	ctx := scriptedCtx(t)
	registrant := testhost.New(t)
	legacy, err := scripted.SealRecord(registrant, scripted.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	standard, err := scripted.SealRecord(registrant, scripted.Standard)
	if err != nil {
		t.Fatal(err)
	}
	ok := rendezvous.StatusOK.Enum
	registerResp := func(r *pb.Message_RegisterResponse) *pb.Message {
		return &pb.Message{Type: pb.Message_REGISTER_RESPONSE.Enum(), RegisterResponse: r}
	}
	discoverResp := func(cookie []byte, regs ...*pb.Message_Register) *pb.Message {
		return &pb.Message{Type: pb.Message_DISCOVER_RESPONSE.Enum(), DiscoverResponse: &pb.Message_DiscoverResponse{
			Status: ok(), Cookie: cookie, Registrations: regs,
		}}
	}
	reg := func(ns *string, record []byte, ttl *uint64) *pb.Message_Register {
		return &pb.Message_Register{Ns: ns, SignedPeerRecord: record, Ttl: ttl}
	}
	cookie := append(make([]byte, 8), "x"...)
	for _, tc := range []struct {
		name     string
		resp     *pb.Message
		discover bool
		want     error // nil: accepted
	}{
		{"register OK", registerResp(&pb.Message_RegisterResponse{Status: ok(), Ttl: proto.Uint64(7200)}), false, nil},
		{"register OK without ttl", registerResp(&pb.Message_RegisterResponse{Status: ok()}), false, scripted.ErrRustMalformed},
		{"register without status", registerResp(&pb.Message_RegisterResponse{Ttl: proto.Uint64(7200)}), false, scripted.ErrRustMalformed},
		{"register without type", &pb.Message{RegisterResponse: &pb.Message_RegisterResponse{Status: ok(), Ttl: proto.Uint64(7200)}}, false, scripted.ErrRustMalformed},
		{"register refused", registerResp(&pb.Message_RegisterResponse{Status: rendezvous.StatusInvalidTTL.Enum()}), false, &rendezvous.Error{Status: rendezvous.StatusInvalidTTL}},
		{"discover OK", discoverResp(cookie, reg(proto.String("x"), legacy, proto.Uint64(60))), true, nil},
		{"discover OK without cookie", discoverResp(nil), true, scripted.ErrRustMalformed},
		{"cookie of 4 bytes", discoverResp(make([]byte, 4)), true, scripted.ErrRustMalformed},
		{"cookie namespace not UTF-8", discoverResp(append(make([]byte, 8), 0xff)), true, scripted.ErrRustMalformed},
		{"registration without ns", discoverResp(cookie, reg(nil, legacy, proto.Uint64(60))), true, scripted.ErrRustMalformed},
		{"registration without ttl", discoverResp(cookie, reg(proto.String("x"), legacy, nil)), true, scripted.ErrRustMalformed},
		{"registration in the standard envelope", discoverResp(cookie, reg(proto.String("x"), standard, proto.Uint64(60))), true, scripted.ErrRustMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			point := testhost.New(t)
			cannedPoint(point, tc.resp)
			h := testhost.New(t)
			c := scripted.NewRustClient(h, peer.AddrInfo{ID: point.ID(), Addrs: point.Addrs()})
			if tc.discover {
				_, _, err = c.Discover(ctx, scripted.RustDiscover{NS: proto.String("x")})
			} else {
				_, err = c.Register(ctx, "x", 0)
			}
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
