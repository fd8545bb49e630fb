package interop

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/interop/scripted"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

var nimVersions = []scripted.NimVersion{scripted.Nim17, scripted.Nim115}

// nimClientTTL lets our client ask for the scaled-down TTLs of these tests.
var nimClientTTL = rendezvous.TTLPolicy{Min: time.Second, Max: 72 * time.Hour, Default: 2 * time.Hour}

func nimCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// nimHost is a loopback host without the resource manager's limit of 8
// inbound connections per IP, for points that many local peers register
// at.
func nimHost(t *testing.T) host.Host {
	return testhost.New(t, libp2p.ResourceManager(&network.NullResourceManager{}))
}

func nimInfo(h host.Host) peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

func newNimPoint(t *testing.T, v scripted.NimVersion, opts ...scripted.NimPointOption) (*scripted.NimPoint, peer.AddrInfo) {
	t.Helper()
	h := nimHost(t)
	p, err := scripted.NewNimPoint(h, v, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, nimInfo(h)
}

// newNimOurClient is our client using the given points (none: only the
// per-point methods), allowed the short TTLs of these tests.
func newNimOurClient(t *testing.T, points ...peer.AddrInfo) (*client.Client, host.Host) {
	t.Helper()
	h := testhost.New(t)
	c, err := client.New(h, client.WithPoints(points...), client.WithTTLPolicy(nimClientTTL), client.WithRequestTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, h
}

// nimRegistrants registers n fresh nim clients in ns at point, one after
// the other, and returns their IDs in the order registered.
func nimRegistrants(ctx context.Context, t *testing.T, v scripted.NimVersion, point peer.AddrInfo, ns string, n int, opts ...scripted.NimClientOption) []peer.ID {
	t.Helper()
	ids := make([]peer.ID, n)
	for i := range ids {
		h := testhost.New(t)
		if _, err := scripted.NewNimClient(h, v, opts...).Register(ctx, point, ns, 0); err != nil {
			t.Fatalf("registrant %d: %v", i, err)
		}
		ids[i] = h.ID()
	}
	return ids
}

// nimEvent waits for the next request at p that match accepts, skipping
// the others.
func nimEvent(t *testing.T, p *scripted.NimPoint, within time.Duration, match func(scripted.NimEvent) bool) scripted.NimEvent {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case ev := <-p.Events():
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no such request at the nim point within %v", within)
		}
	}
}

// nimFrom matches a decoded request of type typ from id.
func nimFrom(id peer.ID, typ pb.Message_MessageType) func(scripted.NimEvent) bool {
	return func(ev scripted.NimEvent) bool {
		return ev.Peer == id && ev.Request != nil && ev.Request.GetType() == typ
	}
}

func nimIDs(regs []client.Registration) []peer.ID {
	out := make([]peer.ID, len(regs))
	for i, r := range regs {
		out[i] = r.Peer.ID
	}
	return out
}

func nimRegIDs(regs []scripted.NimRegistration) []peer.ID {
	out := make([]peer.ID, len(regs))
	for i, r := range regs {
		out[i] = r.Record.PeerID
	}
	return out
}

// nimSameSet reports whether got holds each of want exactly once.
func nimSameSet(got, want []peer.ID) bool {
	a, b := slices.Clone(got), slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// nimLongAddrs returns n long DNS addresses, about 80 bytes each in a
// record.
func nimLongAddrs(t *testing.T, n int) []ma.Multiaddr {
	t.Helper()
	out := make([]ma.Multiaddr, n)
	for i := range out {
		a, err := ma.NewMultiaddr(fmt.Sprintf("/dns4/%s%d.example/tcp/%d", strings.Repeat("a", 60), i, 4000+i))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = a
	}
	return out
}

// nimRaw opens a stream from h to point, writes each body as a frame and
// reads answers until the point ends the stream; err is how it ended.
func nimRaw(ctx context.Context, t *testing.T, h host.Host, point peer.AddrInfo, bodies ...[]byte) ([]*pb.Message, error) {
	t.Helper()
	h.Peerstore().AddAddrs(point.ID, point.Addrs, time.Hour)
	s, err := h.NewStream(ctx, point.ID, rendezvous.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	for _, b := range bodies {
		if _, err := s.Write(append(binary.AppendUvarint(nil, uint64(len(b))), b...)); err != nil {
			return nil, err
		}
	}
	r := bufio.NewReader(s)
	var answers []*pb.Message
	for {
		buf, err := scripted.ReadFrame(r, 8<<20)
		if err != nil {
			return answers, err
		}
		m, err := scripted.Decode(buf)
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, m)
	}
}

// nimClosedUnanswered reports whether a stream ended without an answer,
// closed or reset by the point (not cut by our deadline).
func nimClosedUnanswered(answers []*pb.Message, err error) bool {
	return len(answers) == 0 && (errors.Is(err, io.EOF) || errors.Is(err, network.ErrReset))
}

// nimField prints an optional field: its value, or "absent".
func nimField[T any](p *T) string {
	if p == nil {
		return "absent"
	}
	return fmt.Sprintf("%q", fmt.Sprint(*p))
}

func nimMarshal(t *testing.T, m *pb.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nimTracer signals each request our point handled.
type nimTracer struct{ handled chan pb.Message_MessageType }

func (m nimTracer) RequestHandled(typ pb.Message_MessageType, _ rendezvous.Status, _ time.Duration) {
	select {
	case m.handled <- typ:
	default:
	}
}

func (nimTracer) StoreStats(store.Stats) {}

func (nimTracer) RequestRefused(pb.Message_MessageType, server.Refusal) {}

// waitHandled waits until our point has handled a request of type typ.
func (m nimTracer) waitHandled(t *testing.T, typ pb.Message_MessageType) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-m.handled:
			if got == typ {
				return
			}
		case <-timeout:
			t.Fatalf("our point handled no %s", typ)
		}
	}
}

// newNimOurPoint is our rendezvous point with its default resources.
func newNimOurPoint(t *testing.T) (peer.AddrInfo, nimTracer) {
	t.Helper()
	h := nimHost(t)
	st := memory.New()
	tr := nimTracer{handled: make(chan pb.Message_MessageType, 1024)}
	srv, err := server.New(h, st, server.WithResources(server.DefaultResources()), server.WithMetricsTracer(tr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(); _ = st.Close() })
	return nimInfo(h), tr
}

// --- Our client at scripted nim points ---

func TestNimPointGrantsAndRefreshesOurRegistration(t *testing.T) {
	const ttl = 2 * time.Second // the point's minimum, scaled down from 2 h
	for _, v := range nimVersions {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			p, info := newNimPoint(t, v, scripted.WithNimTTLRange(ttl, 72*time.Hour))
			c, h := newNimOurClient(t, info)
			ctx := nimCtx(t)

			results, err := c.Register(ctx, "nim-refresh", ttl)
			if err != nil || results[0].TTL != ttl {
				t.Fatalf("register: %+v, %v; want %v granted", results, err, ttl)
			}
			if ev := nimEvent(t, p, time.Second, nimFrom(h.ID(), pb.Message_REGISTER)); ev.Request.GetRegister().GetTtl() != 2 {
				t.Fatalf("REGISTER asked for ttl %s, want 2", nimField(ev.Request.GetRegister().Ttl))
			}
			// Over two TTLs, every REGISTER must find the last one still
			// live: the registration never lapses.
			start, refreshes := time.Now(), 0
			for time.Since(start) < 2*ttl {
				ev := nimEvent(t, p, ttl, nimFrom(h.ID(), pb.Message_REGISTER))
				if ev.Response.GetRegisterResponse().GetStatus() != rendezvous.StatusOK || !ev.Renewed {
					t.Fatalf("refresh %d: %v, renewed %v: the registration lapsed", refreshes+1, ev.Response, ev.Renewed)
				}
				refreshes++
			}
			if regs := p.Registrations("nim-refresh"); len(regs) != 1 || regs[0].Peer != h.ID() {
				t.Fatalf("point holds %+v after %d refreshes", regs, refreshes)
			}

			if _, err := c.Unregister(ctx, "nim-refresh"); err != nil {
				t.Fatal(err)
			}
			// Our client waits for the point to close the stream, which it
			// does once the UNREGISTER is carried out.
			if regs := p.Registrations("nim-refresh"); len(regs) != 0 {
				t.Fatalf("point holds %+v after UNREGISTER", regs)
			}
			t.Logf("%d refreshes over %v", refreshes, 2*ttl)
		})
	}
}

func TestNimPointPagesOurDiscover(t *testing.T) {
	for _, v := range nimVersions {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			_, info := newNimPoint(t, v)
			ctx := nimCtx(t)
			ids := nimRegistrants(ctx, t, v, info, "nim-pages", 25)

			// Pages of 10, each call continuing from the cookie of the last.
			// nim's cookie offset is the first registration a full page
			// leaves out, and the next page starts after it: the 11th and
			// the 22nd registrations are never returned through cookies.
			c, _ := newNimOurClient(t, info)
			want := [][]peer.ID{ids[0:10], ids[11:21], ids[22:25], nil}
			seen := map[peer.ID]int{}
			for i, w := range want {
				regs, _, err := c.Discover(ctx, "nim-pages", 10)
				if err != nil {
					t.Fatalf("page %d: %v", i+1, err)
				}
				if !nimSameSet(nimIDs(regs), w) {
					t.Fatalf("page %d: %d registrations %v, want %v", i+1, len(regs), nimIDs(regs), w)
				}
				for _, r := range regs {
					if seen[r.Peer.ID]++; seen[r.Peer.ID] > 1 {
						t.Fatalf("%s returned twice", r.Peer.ID)
					}
				}
			}

			// Without a cookie, one DISCOVER with our default limit (1000)
			// returns every registration exactly once.
			fresh, _ := newNimOurClient(t, info)
			regs, _, err := fresh.Discover(ctx, "nim-pages", 0)
			if err != nil || !nimSameSet(nimIDs(regs), ids) {
				t.Fatalf("one page: %d registrations (%v), want the 25", len(regs), err)
			}
		})
	}
}

func TestNimPointListsEveryNamespaceForOurClient(t *testing.T) {
	for _, v := range nimVersions {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			p, info := newNimPoint(t, v)
			ctx := nimCtx(t)
			a := nimRegistrants(ctx, t, v, info, "nim-all-a", 2)
			b := nimRegistrants(ctx, t, v, info, "nim-all-b", 1)
			c, h := newNimOurClient(t, info)

			regs, _, err := c.Discover(ctx, "", 0)
			if v == scripted.Nim115 {
				if err != nil || !nimSameSet(nimIDs(regs), append(a, b...)) {
					t.Fatalf("every namespace: %v (%v), want %v and %v", nimIDs(regs), err, a, b)
				}
				return
			}
			// 1.7 needs `ns`: our client leaves it out, so the point
			// closes the stream unanswered, and does not exit.
			if err == nil || !errors.Is(err, client.ErrNoPointReached) || !strings.Contains(err.Error(), "every namespace") {
				t.Fatalf("every namespace at 1.7: %d registrations, %v; want an error saying the point cannot list every namespace", len(regs), err)
			}
			ev := nimEvent(t, p, time.Second, func(ev scripted.NimEvent) bool { return ev.Peer == h.ID() })
			if !errors.Is(ev.Dropped, scripted.ErrNimUndecodable) {
				t.Fatalf("the point dropped our DISCOVER without ns with %v, want it undecodable", ev.Dropped)
			}
			select {
			case <-p.Crashed():
				t.Fatal("the 1.7 point exited")
			default:
			}
			regs, _, err = c.DiscoverAt(ctx, info.ID, "nim-all-a", 0, nil)
			if err != nil || !nimSameSet(nimIDs(regs), a) {
				t.Fatalf("after: %v (%v), want %v", nimIDs(regs), err, a)
			}
		})
	}
}

func TestNimPointUnknownNamespaceIsEmptyForOurClient(t *testing.T) {
	for _, v := range nimVersions {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			p, info := newNimPoint(t, v)
			ctx := nimCtx(t)
			nimRegistrants(ctx, t, v, info, "nim-known", 1)
			c, h := newNimOurClient(t, info)

			regs, _, err := c.Discover(ctx, "nim-unknown", 0)
			if err != nil || len(regs) != 0 {
				t.Fatalf("unknown namespace: %d registrations, %v; want none and no error", len(regs), err)
			}
			ev := nimEvent(t, p, time.Second, nimFrom(h.ID(), pb.Message_DISCOVER))
			if got := ev.Response.GetDiscoverResponse().GetStatus(); got != rendezvous.StatusInvalidNamespace {
				t.Fatalf("point answered %v, want E_INVALID_NAMESPACE", got)
			}
			found, err := c.FindPeers(ctx, "nim-unknown")
			if err != nil {
				t.Fatal(err)
			}
			for pi := range found {
				t.Fatalf("FindPeers in an unknown namespace found %s", pi.ID)
			}
		})
	}
}

func TestNimPointAdvertiseFindPeers(t *testing.T) {
	for _, v := range nimVersions {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			_, info := newNimPoint(t, v)
			ctx := nimCtx(t)
			advertiser, ah := newNimOurClient(t, info)
			finder, _ := newNimOurClient(t, info)

			ttl, err := advertiser.Advertise(ctx, "nim-adv", discovery.TTL(3*time.Hour))
			if err != nil || ttl != 3*time.Hour {
				t.Fatalf("Advertise: %v, %v; want 3h", ttl, err)
			}
			found, err := finder.FindPeers(ctx, "nim-adv", discovery.Limit(10))
			if err != nil {
				t.Fatal(err)
			}
			var got []peer.AddrInfo
			for pi := range found {
				got = append(got, pi)
			}
			if len(got) != 1 || got[0].ID != ah.ID() || len(got[0].Addrs) == 0 {
				t.Fatalf("FindPeers: %v, want %s with addresses", got, ah.ID())
			}
		})
	}
}

// TestNimPointSeesOurRequestsOnTheWire checks the fields our client writes
// where a nim point is strict: no `cookie` field on a first page, `limit`
// written and never 0, and no `ns` for every namespace.
func TestNimPointSeesOurRequestsOnTheWire(t *testing.T) {
	for _, v := range nimVersions {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			p, info := newNimPoint(t, v)
			ctx := nimCtx(t)
			nimRegistrants(ctx, t, v, info, "nim-wire", 3)
			c, h := newNimOurClient(t, info)
			next := func() (*pb.Message_Discover, *pb.Message_DiscoverResponse) {
				ev := nimEvent(t, p, time.Second, nimFrom(h.ID(), pb.Message_DISCOVER))
				return ev.Request.GetDiscover(), ev.Response.GetDiscoverResponse()
			}

			if _, _, err := c.Discover(ctx, "nim-wire", 2); err != nil {
				t.Fatal(err)
			}
			d, first := next()
			if d.Ns == nil || d.GetNs() != "nim-wire" || d.Cookie != nil || d.Limit == nil || d.GetLimit() != 2 {
				t.Fatalf("first page: ns %s, cookie %x (present %v), limit %s; want ns, no cookie field, limit 2", nimField(d.Ns), d.Cookie, d.Cookie != nil, nimField(d.Limit))
			}
			if first.GetStatus() != rendezvous.StatusOK || len(first.Registrations) != 2 {
				t.Fatalf("first page answered %v", first)
			}

			if _, _, err := c.Discover(ctx, "nim-wire", 0); err != nil {
				t.Fatal(err)
			}
			d, _ = next()
			if !slices.Equal(d.Cookie, first.Cookie) || d.Limit == nil || d.GetLimit() != client.DefaultDiscoverLimit {
				t.Fatalf("next page: cookie %x, limit %s; want the cookie %x and limit %d", d.Cookie, nimField(d.Limit), first.Cookie, client.DefaultDiscoverLimit)
			}

			// DiscoverAt with limit 0 and no cookie: the same fields.
			if _, _, err := c.DiscoverAt(ctx, info.ID, "nim-wire", 0, nil); err != nil {
				t.Fatal(err)
			}
			d, resp := next()
			if d.Cookie != nil || d.Limit == nil || d.GetLimit() != client.DefaultDiscoverLimit || len(resp.Registrations) != 3 {
				t.Fatalf("DiscoverAt: cookie present %v, limit %s, %d registrations; want no cookie field, limit %d, 3", d.Cookie != nil, nimField(d.Limit), len(resp.Registrations), client.DefaultDiscoverLimit)
			}

			if _, _, err := c.Discover(ctx, "", 0); (err == nil) != (v == scripted.Nim115) {
				t.Fatalf("every namespace at %s: %v", v, err)
			}
			if v == scripted.Nim115 {
				d, resp := next()
				if d.Ns != nil || d.Cookie != nil || d.GetLimit() != client.DefaultDiscoverLimit || len(resp.Registrations) != 3 {
					t.Fatalf("every namespace: ns %s, cookie present %v, limit %s, %d registrations; want no ns, no cookie, limit %d, 3", nimField(d.Ns), d.Cookie != nil, nimField(d.Limit), len(resp.Registrations), client.DefaultDiscoverLimit)
				}
			}
			select {
			case <-p.Crashed():
				t.Fatal("our DISCOVER for every namespace took the point down")
			default:
			}
		})
	}
}

// TestNimPointZeroRemainingTTLIsUnderASecond: a nim point writes a
// registration's remaining TTL in whole seconds, rounded down, so `ttl` 0
// means less than a second is left, not "absent".
func TestNimPointZeroRemainingTTLIsUnderASecond(t *testing.T) {
	p, info := newNimPoint(t, scripted.Nim115, scripted.WithNimTTLRange(time.Second, 72*time.Hour))
	ctx := nimCtx(t)
	registrant, rh := newNimOurClient(t)
	rh.Peerstore().AddAddrs(info.ID, info.Addrs, time.Hour)
	if granted, err := registrant.RegisterAt(ctx, info.ID, "nim-expiring", time.Second); err != nil || granted != time.Second {
		t.Fatalf("register: %v, %v", granted, err)
	}
	c, h := newNimOurClient(t, info)
	regs, _, err := c.DiscoverAt(ctx, info.ID, "nim-expiring", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := nimEvent(t, p, time.Second, nimFrom(h.ID(), pb.Message_DISCOVER))
	sent := ev.Response.GetDiscoverResponse().GetRegistrations()
	if len(sent) != 1 || sent[0].Ttl == nil || sent[0].GetTtl() != 0 || len(regs) != 1 {
		t.Fatalf("the point sent %v and our client kept %d; want one registration with ttl 0 (if none: it expired before the DISCOVER)", sent, len(regs))
	}
	if regs[0].TTL > time.Second {
		t.Errorf("the point says under a second is left (ttl 0); our client keeps the registration for %v", regs[0].TTL)
	}
}

// --- Scripted nim clients at our point ---

func TestNimClientFlowAtOurPoint(t *testing.T) {
	for _, v := range nimVersions {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			info, tr := newNimOurPoint(t)
			ctx := nimCtx(t)
			regs := make([]*scripted.NimClient, 5)
			ids := make([]peer.ID, len(regs))
			for i := range regs {
				h := testhost.New(t)
				regs[i], ids[i] = scripted.NewNimClient(h, v), h.ID()
				if granted, err := regs[i].Register(ctx, info, "nim-b", 0); err != nil || granted != scripted.NimDefaultMinTTL {
					t.Fatalf("register %d: %v, %v; want 2h granted", i, granted, err)
				}
			}

			// Pages of 2, following cookies; each answer decodes strictly.
			obs := scripted.NewNimClient(testhost.New(t), v)
			seen := map[peer.ID]int{}
			for i, want := range []int{2, 2, 1, 0} {
				page, err := obs.Discover(ctx, info, "nim-b", 2)
				if err != nil || len(page) != want {
					t.Fatalf("page %d: %d registrations, %v; want %d", i+1, len(page), err, want)
				}
				for _, r := range page {
					if r.NS != "nim-b" || r.TTL <= 0 || r.TTL > scripted.NimDefaultMinTTL {
						t.Fatalf("registration %+v: want ns nim-b and a TTL within 2h", r)
					}
					seen[r.Record.PeerID]++
				}
				if c := obs.Cookie(info.ID, "nim-b"); len(c) == 0 || len(c) >= scripted.NimMaxKeptCookie {
					t.Fatalf("page %d: cookie %x not kept", i+1, c)
				}
			}
			if len(seen) != len(ids) {
				t.Fatalf("saw %v, want each of %v", seen, ids)
			}
			for id, n := range seen {
				if n != 1 {
					t.Fatalf("%s seen %d times", id, n)
				}
			}

			// Every namespace: 1.7 writes ns "", 1.15 leaves ns out; our
			// point lists every namespace for both.
			all, err := scripted.NewNimClient(testhost.New(t), v).Discover(ctx, info, "", 1000)
			if err != nil || !nimSameSet(nimRegIDs(all), ids) {
				t.Fatalf("every namespace: %v (%v), want %v", nimRegIDs(all), err, ids)
			}

			if err := regs[0].Unregister(ctx, info, "nim-b"); err != nil {
				t.Fatal(err)
			}
			tr.waitHandled(t, pb.Message_UNREGISTER)
			left, err := scripted.NewNimClient(testhost.New(t), v).Discover(ctx, info, "nim-b", 1000)
			if err != nil || !nimSameSet(nimRegIDs(left), ids[1:]) {
				t.Fatalf("after UNREGISTER: %v (%v), want %v", nimRegIDs(left), err, ids[1:])
			}
		})
	}
}

// TestNimClientReadCapAtOurPoint: registrations larger in total than a
// nim 1.7 client reads (64 KiB) come in pages it can read, and cookies
// lead to every one.
func TestNimClientReadCapAtOurPoint(t *testing.T) {
	for _, v := range nimVersions {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			info, _ := newNimOurPoint(t)
			ctx := nimCtx(t)
			ids := nimRegistrants(ctx, t, v, info, "nim-big", 20, scripted.WithNimAdvertisedAddrs(nimLongAddrs(t, 44)...))

			obs := scripted.NewNimClient(testhost.New(t), v)
			seen := map[peer.ID]int{}
			pages := 0
			for ; pages < 10; pages++ {
				page, err := obs.Discover(ctx, info, "nim-big", 1000)
				if err != nil {
					t.Fatalf("page %d: %v", pages+1, err)
				}
				if len(page) == 0 {
					break
				}
				for _, r := range page {
					seen[r.Record.PeerID]++
				}
			}
			if pages < 2 || len(seen) != len(ids) {
				t.Fatalf("%d pages brought %d of %d peers; want at least 2 pages and every peer", pages, len(seen), len(ids))
			}
			for id, n := range seen {
				if n != 1 {
					t.Fatalf("%s seen %d times", id, n)
				}
			}
		})
	}
}

func TestNimClientAsksOnlyRendezvousPeers(t *testing.T) {
	ctx := nimCtx(t)
	plain := testhost.New(t)
	c := scripted.NewNimClient(testhost.New(t), scripted.Nim115)
	if _, err := c.Discover(ctx, nimInfo(plain), "nim-x", 10); !errors.Is(err, scripted.ErrNimNotAPoint) {
		t.Fatalf("DISCOVER to a peer without the protocol: %v, want ErrNimNotAPoint", err)
	}
	info, _ := newNimOurPoint(t)
	if _, err := c.Discover(ctx, info, "nim-x", 10); err != nil {
		t.Fatalf("DISCOVER to our point: %v", err)
	}
}

// TestNimClientDecodesStrictly runs the scripted nim clients against
// canned answers: they refuse or drop what nim's client does.
func TestNimClientDecodesStrictly(t *testing.T) {
	fake := testhost.New(t)
	record, err := scripted.SealRecord(fake, scripted.Standard)
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := scripted.SealRecord(fake, scripted.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(regs ...*pb.Message_Register) *pb.Message {
		return &pb.Message{Type: pb.Message_DISCOVER_RESPONSE.Enum(), DiscoverResponse: &pb.Message_DiscoverResponse{
			Registrations: regs, Cookie: []byte{8, 1}, Status: rendezvous.StatusOK.Enum(),
		}}
	}
	reg := func(ns *string, rec []byte, ttl *uint64) *pb.Message_Register {
		return &pb.Message_Register{Ns: ns, SignedPeerRecord: rec, Ttl: ttl}
	}
	ns, hour := proto.String("nim-strict"), proto.Uint64(3600)
	big := ok()
	big.DiscoverResponse.StatusText = proto.String(strings.Repeat("x", 64<<10))
	withCookie := func(n int) *pb.Message {
		m := ok(reg(ns, record, hour))
		m.DiscoverResponse.Cookie = make([]byte, n)
		return m
	}
	cases := []struct {
		name    string
		answer  *pb.Message
		fail17  bool // the 1.7 client fails the request
		fail115 bool
		regs    int  // registrations kept otherwise
		cookie  bool // the answer's cookie is kept
	}{
		{"valid", ok(reg(ns, record, hour)), false, false, 1, true},
		{"no-type", &pb.Message{DiscoverResponse: ok().DiscoverResponse}, true, true, 0, false},
		{"no-status", &pb.Message{Type: pb.Message_DISCOVER_RESPONSE.Enum(), DiscoverResponse: &pb.Message_DiscoverResponse{}}, true, true, 0, false},
		{"registration-without-ns", ok(reg(nil, record, hour)), true, true, 0, false},
		{"registration-without-ttl", ok(reg(ns, record, nil)), false, false, 0, true},
		{"ttl-over-72h", ok(reg(ns, record, proto.Uint64(72*3600+1))), false, false, 0, true},
		{"legacy-envelope", ok(reg(ns, legacy, hour)), false, false, 0, true},
		{"error-status", &pb.Message{Type: pb.Message_DISCOVER_RESPONSE.Enum(), DiscoverResponse: &pb.Message_DiscoverResponse{Status: rendezvous.StatusUnavailable.Enum()}}, true, true, 0, false},
		{"over-64KiB", big, true, false, 0, true},
		{"cookie-999-bytes", withCookie(999), false, false, 1, true},
		{"cookie-1000-bytes", withCookie(1000), false, false, 1, false},
	}
	answers := map[string]*pb.Message{}
	for _, c := range cases {
		answers[c.name] = c.answer
	}
	fake.SetStreamHandler(rendezvous.ProtocolID, func(s network.Stream) {
		defer s.Close()
		buf, err := scripted.ReadFrame(bufio.NewReader(s), 1<<20)
		if err != nil {
			_ = s.Reset()
			return
		}
		req, err := scripted.Decode(buf)
		if err != nil {
			_ = s.Reset()
			return
		}
		_ = scripted.WriteFrame(s, answers[req.GetDiscover().GetNs()])
	})
	ctx := nimCtx(t)
	for _, v := range nimVersions {
		for _, c := range cases {
			t.Run(v.String()+"/"+c.name, func(t *testing.T) {
				nc := scripted.NewNimClient(testhost.New(t), v)
				regs, err := nc.Discover(ctx, nimInfo(fake), c.name, 10)
				fail := c.fail17
				if v == scripted.Nim115 {
					fail = c.fail115
				}
				if (err != nil) != fail {
					t.Fatalf("error %v, want failure %v", err, fail)
				}
				if len(regs) != c.regs && !fail {
					t.Fatalf("%d registrations kept, want %d", len(regs), c.regs)
				}
				if kept := nc.Cookie(fake.ID(), c.name) != nil; kept != (c.cookie && !fail) {
					t.Fatalf("cookie kept %v", kept)
				}
			})
		}
	}
}

// --- The scripted nim point refuses what nim's refuses ---

func TestNimPointRefusesWhatNimRefuses(t *testing.T) {
	for _, v := range nimVersions {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			p, info := newNimPoint(t, v)
			ctx := nimCtx(t)
			h := testhost.New(t)
			if _, err := scripted.NewNimClient(h, v).Register(ctx, info, "nim-strict", 0); err != nil {
				t.Fatal(err)
			}
			record, err := scripted.SealRecord(h, scripted.Standard)
			if err != nil {
				t.Fatal(err)
			}
			legacy, err := scripted.SealRecord(h, scripted.Legacy)
			if err != nil {
				t.Fatal(err)
			}
			large, err := scripted.SealRecord(h, scripted.Standard, nimLongAddrs(t, 60)...)
			if err != nil {
				t.Fatal(err)
			}
			register := func(ns string, rec []byte, ttl *uint64) *pb.Message {
				return &pb.Message{Type: pb.Message_REGISTER.Enum(), Register: &pb.Message_Register{Ns: proto.String(ns), SignedPeerRecord: rec, Ttl: ttl}}
			}
			discover := func(ns *string, limit *uint64, cookie []byte) *pb.Message {
				return &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{Ns: ns, Limit: limit, Cookie: cookie}}
			}
			untyped := register("nim-untyped", record, proto.Uint64(7200))
			untyped.Type = nil
			ns := proto.String("nim-strict")
			cases := []struct {
				name    string
				only    scripted.NimVersion // 0: both versions
				req     *pb.Message
				noReply bool
				status  rendezvous.Status
				ttl     uint64 // granted by an OK REGISTER
				regs    int    // in an OK DISCOVER
			}{
				{name: "REGISTER without type", req: untyped, noReply: true},
				{name: "REGISTER over 4096 bytes", req: register("nim-strict", large, proto.Uint64(7200)), noReply: true},
				{name: "REGISTER in the legacy envelope", req: register("nim-strict", legacy, proto.Uint64(7200)), status: rendezvous.StatusInvalidSignedPeerRecord},
				{name: "REGISTER under the minimum TTL", req: register("nim-strict", record, proto.Uint64(7199)), status: rendezvous.StatusInvalidTTL},
				{name: "REGISTER over 72 h", req: register("nim-strict", record, proto.Uint64(72*3600+1)), status: rendezvous.StatusInvalidTTL},
				{name: "REGISTER without TTL gets the minimum", req: register("nim-strict", record, nil), ttl: 7200},
				{name: "REGISTER_RESPONSE to the point", req: &pb.Message{Type: pb.Message_REGISTER_RESPONSE.Enum(), RegisterResponse: &pb.Message_RegisterResponse{Status: rendezvous.StatusOK.Enum()}}, noReply: true},
				{name: "DISCOVER with an empty cookie", req: discover(ns, proto.Uint64(10), []byte{}), status: rendezvous.StatusInvalidCookie},
				{name: "DISCOVER with an 8-byte-sequence cookie", req: discover(ns, proto.Uint64(10), rendezvous.Cookie{Seq: 1, Namespace: "nim-strict"}.Encode()), status: rendezvous.StatusInvalidCookie},
				{name: "DISCOVER with limit 0", req: discover(ns, proto.Uint64(0), nil), regs: 0},
				{name: "DISCOVER without limit", req: discover(ns, nil, nil), regs: 1},
				{name: "DISCOVER in an unknown namespace", req: discover(proto.String("nim-nobody"), proto.Uint64(10), nil), status: rendezvous.StatusInvalidNamespace},
				{name: "DISCOVER in a 256-byte namespace", req: discover(proto.String(strings.Repeat("n", 256)), proto.Uint64(10), nil), status: rendezvous.StatusInvalidNamespace},
				{name: "DISCOVER without ns", only: scripted.Nim17, req: discover(nil, proto.Uint64(10), nil), noReply: true},
				{name: "DISCOVER without ns", only: scripted.Nim115, req: discover(nil, proto.Uint64(10), nil), regs: 1},
				{name: `DISCOVER with ns ""`, only: scripted.Nim115, req: discover(proto.String(""), proto.Uint64(10), nil), status: rendezvous.StatusInvalidNamespace},
			}
			for _, c := range cases {
				if c.only != 0 && c.only != v {
					continue
				}
				answers, err := nimRaw(ctx, t, h, info, nimMarshal(t, c.req))
				if c.noReply {
					if !nimClosedUnanswered(answers, err) {
						t.Errorf("%s: answers %v (%v), want the stream closed unanswered", c.name, answers, err)
					}
					continue
				}
				if len(answers) != 1 {
					t.Errorf("%s: %d answers (%v), want 1", c.name, len(answers), err)
					continue
				}
				a := answers[0]
				if a.Type == nil {
					t.Errorf("%s: answer without type", c.name)
				}
				if rr := a.RegisterResponse; rr != nil {
					// Every field nim writes is there, zeros too.
					if rr.Status == nil || rr.GetStatus() != c.status || (c.status == rendezvous.StatusOK && rr.GetTtl() != c.ttl) || (c.status != rendezvous.StatusOK && rr.StatusText == nil) {
						t.Errorf("%s: answered %v, want status %v ttl %d", c.name, rr, c.status, c.ttl)
					}
					continue
				}
				dr := a.DiscoverResponse
				if dr == nil || dr.Status == nil || dr.GetStatus() != c.status {
					t.Errorf("%s: answered %v, want status %v", c.name, a, c.status)
					continue
				}
				if c.status != rendezvous.StatusOK {
					continue
				}
				if dr.Cookie == nil || len(dr.Registrations) != c.regs {
					t.Errorf("%s: cookie %x, %d registrations; want a cookie and %d", c.name, dr.Cookie, len(dr.Registrations), c.regs)
				}
				for _, r := range dr.Registrations {
					if r.Ns == nil || r.SignedPeerRecord == nil || r.Ttl == nil {
						t.Errorf("%s: registration %v lacks a field", c.name, r)
					}
				}
			}
			if regs := p.Registrations("nim-untyped"); len(regs) != 0 {
				t.Errorf("the REGISTER without type registered %v", regs)
			}
			select {
			case <-p.Crashed():
				t.Error("the point exited")
			default:
			}
		})
	}
}

func TestNimPointAnswersOneRequestPerStream(t *testing.T) {
	for _, v := range nimVersions {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			_, info := newNimPoint(t, v)
			ctx := nimCtx(t)
			h := testhost.New(t)
			if _, err := scripted.NewNimClient(h, v).Register(ctx, info, "nim-one", 0); err != nil {
				t.Fatal(err)
			}
			req := nimMarshal(t, &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{Ns: proto.String("nim-one"), Limit: proto.Uint64(10)}})
			answers, err := nimRaw(ctx, t, h, info, req, req)
			if len(answers) != 1 || !(errors.Is(err, io.EOF) || errors.Is(err, network.ErrReset)) {
				t.Fatalf("two DISCOVERs on one stream: %d answers, then %v; want 1 answer and the stream closed", len(answers), err)
			}
		})
	}
}

func TestNimPoint17ExitsOnEmptyNamespace(t *testing.T) {
	p, info := newNimPoint(t, scripted.Nim17)
	ctx := nimCtx(t)
	h := testhost.New(t)
	req := nimMarshal(t, &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{Ns: proto.String(""), Limit: proto.Uint64(10)}})
	if answers, err := nimRaw(ctx, t, h, info, req); !nimClosedUnanswered(answers, err) {
		t.Fatalf(`DISCOVER with ns "": %v (%v), want no answer`, answers, err)
	}
	select {
	case <-p.Crashed():
	case <-time.After(5 * time.Second):
		t.Fatal("the 1.7 point is still up")
	}
	// The exited point answers no stream: opening one fails or, when this
	// host has not yet seen the connection drop (go-libp2p negotiates the
	// protocol lazily, so NewStream can return before any round trip), the
	// stream ends without a byte.
	s, err := h.NewStream(ctx, info.ID, rendezvous.ProtocolID)
	if err != nil {
		return
	}
	defer s.Reset()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	// A DISCOVER that a running point answers.
	live := nimMarshal(t, &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{Ns: proto.String("ns"), Limit: proto.Uint64(10)}})
	_, _ = s.Write(append(binary.AppendUvarint(nil, uint64(len(live))), live...))
	var timeout interface{ Timeout() bool }
	if n, err := s.Read(make([]byte, 1)); n > 0 || err == nil || (errors.As(err, &timeout) && timeout.Timeout()) {
		t.Fatalf("the exited point's stream read %d bytes (%v), want it closed or reset", n, err)
	}
}
