package interop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/interop/scripted"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// wakuTimeout bounds every wait of these tests.
const wakuTimeout = 10 * time.Second

// newWakuPoint mounts a scripted Waku point on a loopback host that lets
// any number of peers of 127.0.0.1 in, and returns it with the requests it
// carries out.
func newWakuPoint(t *testing.T, opts ...scripted.WakuPointOption) (*scripted.WakuPoint, peer.AddrInfo, <-chan scripted.WakuExchange) {
	t.Helper()
	h := testhost.New(t, libp2p.ResourceManager(&network.NullResourceManager{}))
	seen := make(chan scripted.WakuExchange, 4096)
	p := scripted.NewWakuPoint(h, append([]scripted.WakuPointOption{scripted.WithWakuObserver(func(x scripted.WakuExchange) { seen <- x })}, opts...)...)
	t.Cleanup(p.Close)
	return p, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}, seen
}

// newOurPoint mounts our point with rc on a loopback host.
func newOurPoint(t *testing.T, rc server.Resources) peer.AddrInfo {
	t.Helper()
	h := testhost.New(t)
	st := memory.New()
	srv, err := server.New(h, st, server.WithResources(rc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(); _ = st.Close() })
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

// newWakuClient returns a scripted Waku client on a host of its own.
func newWakuClient(t *testing.T, point peer.AddrInfo, opts ...scripted.WakuClientOption) (*scripted.WakuClient, host.Host) {
	t.Helper()
	h := testhost.New(t)
	h.Peerstore().AddAddrs(point.ID, point.Addrs, time.Hour)
	return scripted.NewWakuClient(h, point.ID, opts...), h
}

// drained returns what the point carried out so far.
func drained(seen <-chan scripted.WakuExchange) []scripted.WakuExchange {
	var out []scripted.WakuExchange
	for {
		select {
		case x := <-seen:
			out = append(out, x)
		default:
			return out
		}
	}
}

// ofType keeps the exchanges of peer p (any peer if empty) of type typ.
func ofType(xs []scripted.WakuExchange, p peer.ID, typ pb.Message_MessageType) []scripted.WakuExchange {
	var out []scripted.WakuExchange
	for _, x := range xs {
		if (p == "" || x.Peer == p) && x.Request.GetType() == typ {
			out = append(out, x)
		}
	}
	return out
}

// heldBy counts what the point holds for p in ns ("" for any namespace).
func heldBy(p *scripted.WakuPoint, id peer.ID, ns string) int {
	return p.Book().Count(time.Now(), func(e scripted.Entry) bool { return e.Peer == id && (ns == "" || e.NS == ns) })
}

func TestWakuPointRegister(t *testing.T) {
	point, info, seen := newWakuPoint(t)
	c, id := newGoClient(t, info)
	ctx := ctxT(t)

	granted, err := c.RegisterAt(ctx, info.ID, "waku", 3*time.Hour)
	if err != nil || granted != 3*time.Hour {
		t.Fatalf("RegisterAt: %v, %v; want 3h granted", granted, err)
	}
	results, err := c.Register(ctx, "kept", 0)
	if err != nil || len(results) != 1 || results[0].TTL != wideTTL.Default {
		t.Fatalf("Register: %+v, %v; want the client's default TTL granted", results, err)
	}
	regs := ofType(drained(seen), id, pb.Message_REGISTER)
	if len(regs) != 2 {
		t.Fatalf("the point carried out %d REGISTERs, want 2", len(regs))
	}
	for _, x := range regs {
		r := x.Request.GetRegister()
		if x.Request.Type == nil || r.Ns == nil || r.Ttl == nil {
			t.Fatalf("REGISTER %v: want type, ns and ttl written", x.Request)
		}
		if _, env, err := scripted.OpenRecord(r.GetSignedPeerRecord()); err != nil || env != scripted.Standard {
			t.Fatalf("REGISTER record: envelope %v, %v; want the standard one", env, err)
		}
		if x.Response.GetRegisterResponse().GetStatus() != pb.Message_OK {
			t.Fatalf("refused: %v", x.Response)
		}
	}
	if heldBy(point, id, "waku") != 1 || heldBy(point, id, "kept") != 1 {
		t.Fatalf("the point holds %v, want one registration in each namespace", point.Book().Live(time.Now(), nil))
	}
}

func TestWakuPointRefreshOnGrantedTTL(t *testing.T) {
	point, info, seen := newWakuPoint(t)
	a, aID := newGoClient(t, info)
	b, _ := newGoClient(t, info)
	ctx := ctxT(t)
	const ttl = 2 * time.Second
	results, err := a.Register(ctx, "short", ttl)
	if err != nil || results[0].TTL != ttl {
		t.Fatalf("Register: %+v, %v; want %v granted", results, err, ttl)
	}
	nextRegister := func() scripted.WakuExchange {
		t.Helper()
		deadline := time.NewTimer(wakuTimeout)
		defer deadline.Stop()
		for {
			select {
			case x := <-seen:
				if x.Peer == aID && x.Request.GetType() == pb.Message_REGISTER {
					return x
				}
			case <-deadline.C:
				t.Fatal("no refresh within the deadline")
			}
		}
	}
	prev := nextRegister()
	// Three refreshes; each check is made just before the registration
	// before it would have run out.
	for i := range 3 {
		x := nextRegister()
		if gap := x.At.Sub(prev.At); gap >= ttl || gap < ttl/4 {
			t.Fatalf("refresh %d came %v after the one before, want within the %v granted", i+1, gap, ttl)
		}
		check := time.NewTimer(time.Until(prev.At.Add(ttl - 100*time.Millisecond)))
		<-check.C
		regs, _, err := b.DiscoverAt(ctx, info.ID, "short", 10, nil)
		if err != nil || len(regs) != 1 || regs[0].Peer.ID != aID {
			t.Fatalf("check %d: %+v, %v; want %s kept alive", i+1, regs, err, aID)
		}
		if heldBy(point, aID, "short") != 1 {
			t.Fatalf("check %d: the point lost the registration", i+1)
		}
		prev = x
	}
}

func TestWakuPointUnregister(t *testing.T) {
	point, info, seen := newWakuPoint(t)
	c, id := newGoClient(t, info)
	ctx := ctxT(t)
	if _, err := c.Register(ctx, "gone", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, "stays", time.Hour); err != nil {
		t.Fatal(err)
	}
	if results, err := c.Unregister(ctx, "gone"); err != nil || results.Err() != nil {
		t.Fatalf("Unregister: %v, %v", results.Err(), err)
	}
	// Our client waits for the point to end the stream, which it does once
	// the UNREGISTER is carried out.
	if heldBy(point, id, "gone") != 0 || heldBy(point, id, "stays") != 1 {
		t.Fatalf("after UNREGISTER the point holds %v", point.Book().Live(time.Now(), nil))
	}
	unregs := ofType(drained(seen), id, pb.Message_UNREGISTER)
	if len(unregs) != 1 || unregs[0].Request.GetUnregister().Ns == nil || unregs[0].Request.GetUnregister().GetNs() != "gone" || unregs[0].Response != nil {
		t.Fatalf("UNREGISTERs %v: want one naming its namespace, unanswered", unregs)
	}
}

// registerPeers registers n peers of their own in ns at point, at once.
func registerPeers(t *testing.T, point peer.AddrInfo, ns string, n int) map[peer.ID]bool {
	t.Helper()
	ctx := ctxT(t)
	clients := make([]*client.Client, n)
	ids := make(map[peer.ID]bool, n)
	for i := range clients {
		var id peer.ID
		clients[i], id = newGoClient(t, point)
		ids[id] = true
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() { _, errs[i] = c.RegisterAt(ctx, point.ID, ns, time.Hour) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestWakuPointDiscoverPagesWithCookies(t *testing.T) {
	_, info, seen := newWakuPoint(t)
	registered := registerPeers(t, info, "paged", 25)
	observer, oID := newGoClient(t, info)
	ctx := ctxT(t)

	found := map[peer.ID]int{}
	calls := 0
	for ; calls < 10; calls++ {
		regs, _, err := observer.Discover(ctx, "paged", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(regs) == 0 {
			break
		}
		for _, r := range regs {
			if !registered[r.Peer.ID] || r.Namespace != "paged" {
				t.Fatalf("discovered %s in %q", r.Peer.ID, r.Namespace)
			}
			found[r.Peer.ID]++
		}
	}
	for id := range registered {
		if found[id] != 1 {
			t.Fatalf("%s found %d times in %d calls, want once", id, found[id], calls)
		}
	}
	// On the wire: the first DISCOVER has no cookie field, every later one
	// the cookie of the answer before, and each the limit asked.
	var last []byte
	for i, x := range ofType(drained(seen), oID, pb.Message_DISCOVER) {
		d := x.Request.GetDiscover()
		if d.GetLimit() != 10 || d.GetNs() != "paged" {
			t.Fatalf("DISCOVER %d: %v, want ns paged and limit 10", i, d)
		}
		if (i == 0) != (d.Cookie == nil) || !bytes.Equal(d.Cookie, last) {
			t.Fatalf("DISCOVER %d sent cookie %x, want %x (none on the first)", i, d.Cookie, last)
		}
		if st := x.Response.GetDiscoverResponse().GetStatus(); st != pb.Message_OK {
			t.Fatalf("DISCOVER %d answered %v", i, st)
		}
		last = x.Response.GetDiscoverResponse().GetCookie()
		if len(last) != scripted.WakuCookieLen {
			t.Fatalf("answer %d: cookie of %d bytes", i, len(last))
		}
	}
}

func TestWakuPointDiscoverAllMislabels(t *testing.T) {
	_, info, _ := newWakuPoint(t)
	a, aID := newGoClient(t, info)
	b, bID := newGoClient(t, info)
	c, cID := newGoClient(t, info)
	observer, _ := newGoClient(t, info)
	ctx := ctxT(t)
	for _, r := range []struct {
		c  *client.Client
		ns string
	}{{a, "alpha"}, {b, "beta"}, {c, "alpha"}, {c, "beta"}} {
		if _, err := r.c.RegisterAt(ctx, info.ID, r.ns, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// The point labels every registration of a response with the namespace
	// of its last one; a client cannot tell, so ours takes the labels as
	// they come.
	page, _, err := observer.DiscoverAt(ctx, info.ID, "", 0, nil)
	if err != nil || len(page) != 4 {
		t.Fatalf("DiscoverAt every namespace: %d registrations, %v; want 4", len(page), err)
	}
	for _, r := range page {
		if r.Namespace != "beta" {
			t.Fatalf("%s labelled %q, want the last one's namespace beta for all", r.Peer.ID, r.Namespace)
		}
	}
	// Discover counts a peer once per namespace: c, twice labelled beta,
	// is one registration, and a shows up in beta.
	regs, _, err := observer.Discover(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[peer.ID]string{}
	for _, r := range regs {
		got[r.Peer.ID] = r.Namespace
	}
	want := map[peer.ID]string{aID: "beta", bID: "beta", cID: "beta"}
	if len(regs) != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Discover every namespace: %v, want %v", got, want)
	}
}

func TestWakuPointUnknownNamespace(t *testing.T) {
	_, info, seen := newWakuPoint(t)
	c, id := newGoClient(t, info)
	ctx := ctxT(t)
	for range 2 {
		regs, results, err := c.Discover(ctx, "nobody", 0)
		if err != nil || results.Err() != nil || len(regs) != 0 {
			t.Fatalf("Discover: %v, %v, %v; want nothing and no error", regs, results.Err(), err)
		}
	}
	// No cookie came back, so none is sent: no empty cookie field.
	xs := ofType(drained(seen), id, pb.Message_DISCOVER)
	if len(xs) != 2 {
		t.Fatalf("%d DISCOVERs, want 2", len(xs))
	}
	for _, x := range xs {
		d, r := x.Request.GetDiscover(), x.Response.GetDiscoverResponse()
		if d.Cookie != nil || d.Limit == nil || d.GetLimit() == 0 {
			t.Fatalf("DISCOVER %v: want no cookie field and a limit", d)
		}
		if r.GetStatus() != pb.Message_OK || r.Cookie != nil {
			t.Fatalf("answer %v: want OK without cookie", r)
		}
	}
}

func TestWakuPointAdvertiseFindPeers(t *testing.T) {
	_, info, _ := newWakuPoint(t)
	a, aID := newGoClient(t, info)
	b, _ := newGoClient(t, info)
	ctx := ctxT(t)
	ttl, err := a.Advertise(ctx, "adv", discovery.TTL(time.Hour))
	if err != nil || ttl != time.Hour {
		t.Fatalf("Advertise: %v, %v; want 1h", ttl, err)
	}
	ch, err := b.FindPeers(ctx, "adv", discovery.Limit(10))
	if err != nil {
		t.Fatal(err)
	}
	var found []peer.AddrInfo
	for p := range ch {
		found = append(found, p)
	}
	if len(found) != 1 || found[0].ID != aID || len(found[0].Addrs) == 0 {
		t.Fatalf("FindPeers: %v, want %s with addresses", found, aID)
	}
}

// The Waku point resets a stream once it reads its end: a client that
// half-closes before reading loses most answers. Twenty requests in a row
// must all be answered.
func TestWakuPointAnswersTwentyRequestsInARow(t *testing.T) {
	point, info, seen := newWakuPoint(t)
	c, id := newGoClient(t, info)
	ctx := ctxT(t)
	const n = 20
	for i := range n {
		granted, err := c.RegisterAt(ctx, info.ID, fmt.Sprintf("burst-%d", i), time.Hour)
		if err != nil || granted != time.Hour {
			t.Fatalf("REGISTER %d: %v, %v; want 1h granted", i, granted, err)
		}
	}
	for i := range n {
		regs, _, err := c.DiscoverAt(ctx, info.ID, fmt.Sprintf("burst-%d", i), 10, nil)
		if err != nil || len(regs) != 1 {
			t.Fatalf("DISCOVER %d: %d registrations, %v; want 1", i, len(regs), err)
		}
	}
	xs := drained(seen)
	regs := ofType(xs, id, pb.Message_REGISTER)
	if len(regs) != n || len(ofType(xs, id, pb.Message_DISCOVER)) != n {
		t.Fatalf("the point carried out %d REGISTERs and %d DISCOVERs, want %d each: a lost answer was retried", len(regs), len(ofType(xs, id, pb.Message_DISCOVER)), n)
	}
	if heldBy(point, id, "") != n {
		t.Fatalf("the point holds %d registrations, want %d", heldBy(point, id, ""), n)
	}
}

// wakuOurPointResources are our point's defaults with TTLs down to 1 s.
func wakuOurPointResources() server.Resources {
	rc := server.DefaultResources()
	rc.MinTTL = time.Second
	return rc
}

func TestWakuClientAtOurPoint(t *testing.T) {
	info := newOurPoint(t, wakuOurPointResources())
	ctx := ctxT(t)

	// Five peers register once, each on a stream it resets after the
	// answer.
	registered := map[peer.ID]bool{}
	var (
		first   *scripted.WakuClient
		firstID peer.ID
	)
	for i := range 5 {
		c, h := newWakuClient(t, info)
		granted, err := c.RegisterOnce(ctx, "flow", 0)
		if err != nil || granted != rendezvous.DefaultTTL {
			t.Fatalf("REGISTER without ttl: %v, %v; want our default %v", granted, err, rendezvous.DefaultTTL)
		}
		registered[h.ID()] = true
		if i == 0 {
			first, firstID = c, h.ID()
		}
	}
	// Pages of 2 with our cookies: every peer once, each with its namespace.
	observer, _ := newWakuClient(t, info)
	found := map[peer.ID]int{}
	var cookie []byte
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		regs, next, err := observer.Discover(ctx, "flow", 2, cookie)
		if err != nil {
			t.Fatal(err)
		}
		if len(next) == 0 {
			t.Fatalf("page %d came without a cookie", pages)
		}
		if len(regs) == 0 {
			break
		}
		for _, r := range regs {
			if r.NS != "flow" || r.TTL <= 0 || r.TTL > int(rendezvous.DefaultTTL/time.Second) {
				t.Fatalf("registration %+v: want its namespace and remaining TTL", r)
			}
			found[r.Peer.ID]++
		}
		cookie = next
	}
	for id := range registered {
		if found[id] != 1 {
			t.Fatalf("%s found %d times, want once", id, found[id])
		}
	}

	// The refreshing Register, with its minimum and lead scaled down.
	refreshed := make(chan error, 16)
	keeper, kh := newWakuClient(t, info, scripted.WithWakuRefresh(time.Second, 500*time.Millisecond),
		scripted.WithWakuOnRefresh(func(_ string, granted time.Duration, err error) {
			if err == nil && granted != time.Second {
				err = fmt.Errorf("refresh granted %v", granted)
			}
			refreshed <- err
		}))
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	if _, err := keeper.Register(kctx, "flow", 500*time.Millisecond); err == nil {
		t.Fatal("a TTL under the client's minimum was taken")
	}
	if granted, err := keeper.Register(kctx, "flow", time.Second); err != nil || granted != time.Second {
		t.Fatalf("Register: %v, %v; want 1s granted", granted, err)
	}
	for range 2 {
		select {
		case err := <-refreshed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(wakuTimeout):
			t.Fatal("no refresh")
		}
	}
	regs, _, err := observer.Discover(ctx, "flow", 0, cookie)
	if err != nil || len(regs) != 1 || regs[0].Peer.ID != kh.ID() {
		t.Fatalf("after its refreshes: %+v, %v; want the refreshing peer alone as new", regs, err)
	}
	stop()

	// UNREGISTER on a stream closed at once: gone soon after.
	if err := first.Unregister(ctx, "flow"); err != nil {
		t.Fatal(err)
	}
	wakuWaitFor(t, "the UNREGISTER to be carried out", func() bool {
		regs, _, err := observer.Discover(ctx, "flow", 0, nil)
		left := 0
		for _, r := range regs {
			if r.Peer.ID == firstID {
				return false
			}
			if registered[r.Peer.ID] {
				left++
			}
		}
		return err == nil && left == len(registered)-1
	})
}

// wakuWaitFor waits, within wakuTimeout, until cond holds.
func wakuWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wakuTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", wakuTimeout, what)
		}
		<-tick.C
	}
}

// wakuPollScale is the idle timeout our point gets in the poller test; the
// poller's pause is scaled by the same factor as server.DefaultIdleTimeout
// to this, so the ratio of the real 2-minute poll to our default holds.
const wakuPollScale = 3 * time.Second

func TestWakuPollerAtOurPoint(t *testing.T) {
	rc := wakuOurPointResources()
	rc.IdleTimeout = wakuPollScale
	info := newOurPoint(t, rc)
	interval := time.Duration(float64(wakuPollScale) * float64(scripted.WakuPollInterval) / float64(server.DefaultIdleTimeout))
	// The pause is longer than the old 1-minute timeout, scaled alike.
	if old := time.Duration(float64(wakuPollScale) * float64(time.Minute) / float64(server.DefaultIdleTimeout)); interval <= old {
		t.Fatalf("poll pause %v not longer than the scaled 1-minute timeout %v", interval, old)
	}
	ctx := ctxT(t)
	a, ah := newWakuClient(t, info)
	b, bh := newWakuClient(t, info)
	poller, ph := newWakuClient(t, info, scripted.WithWakuPollInterval(interval))
	if _, err := a.RegisterOnce(ctx, "poll", time.Hour); err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	poll, err := poller.DiscoverAsync(pctx, "poll")
	if err != nil {
		t.Fatal(err)
	}
	next := func() scripted.WakuAnswer {
		t.Helper()
		timeout := time.NewTimer(wakuTimeout)
		defer timeout.Stop()
		select {
		case ans, ok := <-poll.Answers():
			if !ok {
				t.Fatalf("the poll stopped: %v", poll.Err())
			}
			return ans
		case <-timeout.C:
		}
		t.Fatal("no answer")
		return scripted.WakuAnswer{}
	}
	first := next()
	if len(first.Registrations) != 1 || first.Registrations[0].Peer.ID != ah.ID() {
		t.Fatalf("first answer %+v, want %s", first.Registrations, ah.ID())
	}
	// Registered between two polls: the next answer, after the pause, on
	// the same stream, brings it alone.
	if _, err := b.RegisterOnce(ctx, "poll", time.Hour); err != nil {
		t.Fatal(err)
	}
	second := next()
	if second.Stream != first.Stream || len(second.Registrations) != 1 || second.Registrations[0].Peer.ID != bh.ID() {
		t.Fatalf("second answer on stream %s: %+v; want %s alone on stream %s", second.Stream, second.Registrations, bh.ID(), first.Stream)
	}
	third := next()
	if third.Stream != first.Stream || len(third.Registrations) != 0 {
		t.Fatalf("third answer on stream %s: %+v; want nothing new on stream %s", third.Stream, third.Registrations, first.Stream)
	}
	// One stream all along, still open.
	var open []string
	for _, c := range ph.Network().ConnsToPeer(info.ID) {
		for _, s := range c.GetStreams() {
			if s.Protocol() == rendezvous.ProtocolID {
				open = append(open, s.ID())
			}
		}
	}
	if len(open) != 1 || open[0] != first.Stream {
		t.Fatalf("rendezvous streams open %v, want only %s", open, first.Stream)
	}
}

func TestWakuPollerFitsDefaultIdleTimeout(t *testing.T) {
	if got := server.DefaultResources().IdleTimeout; got < 2*scripted.WakuPollInterval {
		t.Fatalf("default idle timeout %v: a Waku client polling every %v on one stream needs at least %v", got, scripted.WakuPollInterval, 2*scripted.WakuPollInterval)
	}
}

// wakuStream is a raw stream to a Waku point.
type wakuStream struct {
	t *testing.T
	s network.Stream
	r *bufio.Reader
}

func openWakuStream(t *testing.T, h host.Host, point peer.AddrInfo) *wakuStream {
	t.Helper()
	ctx := ctxT(t)
	if err := h.Connect(ctx, point); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, point.ID, rendezvous.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.SetDeadline(time.Now().Add(wakuTimeout))
	t.Cleanup(func() { _ = s.Reset() })
	return &wakuStream{t: t, s: s, r: bufio.NewReader(s)}
}

func (w *wakuStream) send(m *pb.Message) {
	w.t.Helper()
	if err := scripted.WriteFrame(w.s, m); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wakuStream) ask(m *pb.Message) *pb.Message {
	w.t.Helper()
	w.send(m)
	frame, err := scripted.ReadFrame(w.r, 1<<20)
	if err != nil {
		w.t.Fatal(err)
	}
	resp, err := scripted.Decode(frame)
	if err != nil {
		w.t.Fatal(err)
	}
	return resp
}

func wakuRegister(ns *string, record []byte, ttl *uint64) *pb.Message {
	return &pb.Message{Type: pb.Message_REGISTER.Enum(), Register: &pb.Message_Register{Ns: ns, SignedPeerRecord: record, Ttl: ttl}}
}

func wakuDiscover(ns *string, limit uint64, cookie []byte) *pb.Message {
	return &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{Ns: ns, Limit: proto.Uint64(limit), Cookie: cookie}}
}

func sealed(t *testing.T, h host.Host, kind scripted.Envelope, addrs ...ma.Multiaddr) []byte {
	t.Helper()
	rec, err := scripted.SealRecord(h, kind, addrs...)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// tcpAddrs returns n distinct 8-byte addresses.
func tcpAddrs(n int) []ma.Multiaddr {
	out := make([]ma.Multiaddr, n)
	for i := range out {
		out[i] = ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 1000+i))
	}
	return out
}

func TestWakuPointAnswersRegister(t *testing.T) {
	_, info, _ := newWakuPoint(t)
	h, other := testhost.New(t), testhost.New(t)
	w := openWakuStream(t, h, info) // every row on one stream
	rec := sealed(t, h, scripted.Standard)
	u := proto.Uint64
	cases := []struct {
		name   string
		req    *pb.Message
		status pb.Message_ResponseStatus
		text   string
		ttl    uint64 // for OK
	}{
		{"no ttl: 2 h", wakuRegister(proto.String("a"), rec, nil), pb.Message_OK, "", 7200},
		{"ttl 0: 2 h", wakuRegister(proto.String("b"), rec, u(0)), pb.Message_OK, "", 7200},
		{"1 s", wakuRegister(proto.String("c"), rec, u(1)), pb.Message_OK, "", 1},
		{"72 h", wakuRegister(proto.String("d"), rec, u(72*3600)), pb.Message_OK, "", 72 * 3600},
		{"72 h and 1 s", wakuRegister(proto.String("e"), rec, u(72*3600+1)), pb.Message_E_INVALID_TTL, "bad ttl", 0},
		{"no type", &pb.Message{Register: wakuRegister(proto.String("f"), rec, nil).Register}, pb.Message_OK, "", 7200},
		{"no namespace", wakuRegister(nil, rec, nil), pb.Message_E_INVALID_NAMESPACE, "unspecified namespace", 0},
		{"256-byte namespace", wakuRegister(proto.String(strings.Repeat("n", 256)), rec, nil), pb.Message_OK, "", 7200},
		{"257-byte namespace", wakuRegister(proto.String(strings.Repeat("n", 257)), rec, nil), pb.Message_E_INVALID_NAMESPACE, "namespace too long", 0},
		{"no record", wakuRegister(proto.String("g"), nil, nil), pb.Message_E_INVALID_SIGNED_PEER_RECORD, "missing signed peer record", 0},
		{"empty record", wakuRegister(proto.String("g"), []byte{}, nil), pb.Message_E_INVALID_SIGNED_PEER_RECORD, "invalid peer record", 0},
		{"legacy envelope", wakuRegister(proto.String("g"), sealed(t, h, scripted.Legacy), nil), pb.Message_E_INVALID_SIGNED_PEER_RECORD, "invalid peer record", 0},
		{"another peer's record", wakuRegister(proto.String("g"), sealed(t, other, scripted.Standard), nil), pb.Message_E_INVALID_SIGNED_PEER_RECORD, "peer id mismatch", 0},
		{"2048 bytes of addresses", wakuRegister(proto.String("h"), sealed(t, h, scripted.Standard, tcpAddrs(256)...), nil), pb.Message_OK, "", 7200},
		{"2056 bytes of addresses", wakuRegister(proto.String("i"), sealed(t, h, scripted.Standard, tcpAddrs(257)...), nil), pb.Message_E_INVALID_SIGNED_PEER_RECORD, "peer info too long", 0},
	}
	for _, tc := range cases {
		resp := w.ask(tc.req)
		r := resp.GetRegisterResponse()
		if resp.GetType() != pb.Message_REGISTER_RESPONSE || r.GetStatus() != tc.status {
			t.Fatalf("%s: answered %v, want %v", tc.name, resp, tc.status)
		}
		if tc.status == pb.Message_OK && (r.StatusText != nil || r.Ttl == nil || r.GetTtl() != tc.ttl) {
			t.Fatalf("%s: %v, want ttl %d and no statusText", tc.name, r, tc.ttl)
		}
		if tc.status != pb.Message_OK && (r.Ttl != nil || r.StatusText == nil || r.GetStatusText() != tc.text) {
			t.Fatalf("%s: %v, want statusText %q and no ttl", tc.name, r, tc.text)
		}
	}
}

func TestWakuPointAnswersDiscover(t *testing.T) {
	_, info, _ := newWakuPoint(t)
	h := testhost.New(t)
	w := openWakuStream(t, h, info)
	if r := w.ask(wakuRegister(proto.String("ns"), sealed(t, h, scripted.Standard), nil)); r.GetRegisterResponse().GetStatus() != pb.Message_OK {
		t.Fatal(r)
	}
	first := w.ask(wakuDiscover(proto.String("ns"), 10, nil)).GetDiscoverResponse()
	cookie := first.GetCookie()
	if len(first.GetRegistrations()) != 1 || len(cookie) != scripted.WakuCookieLen {
		t.Fatalf("first page %v: want one registration and a 40-byte cookie", first)
	}
	cases := []struct {
		name   string
		req    *pb.Message
		status pb.Message_ResponseStatus
		text   string
		regs   int
		cookie []byte // for OK
	}{
		{"empty cookie", wakuDiscover(proto.String("ns"), 10, []byte{}), pb.Message_E_INVALID_COOKIE, "bad cookie", 0, nil},
		{"8-byte cookie", wakuDiscover(proto.String("ns"), 10, cookie[:8]), pb.Message_E_INVALID_COOKIE, "bad cookie", 0, nil},
		{"cookie of another namespace", wakuDiscover(proto.String("other"), 10, cookie), pb.Message_E_INVALID_COOKIE, "bad cookie", 0, nil},
		{"257-byte namespace", wakuDiscover(proto.String(strings.Repeat("n", 257)), 10, nil), pb.Message_E_INVALID_NAMESPACE, "namespace too long", 0, nil},
		{"unknown namespace", wakuDiscover(proto.String("nobody"), 10, nil), pb.Message_OK, "", 0, nil},
		{"last cookie: nothing new, same cookie", wakuDiscover(proto.String("ns"), 10, cookie), pb.Message_OK, "", 0, cookie},
		{"no cookie, no limit", &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: &pb.Message_Discover{Ns: proto.String("ns")}}, pb.Message_OK, "", 1, cookie},
	}
	for _, tc := range cases {
		resp := w.ask(tc.req)
		r := resp.GetDiscoverResponse()
		if resp.GetType() != pb.Message_DISCOVER_RESPONSE || r.GetStatus() != tc.status || len(r.GetRegistrations()) != tc.regs {
			t.Fatalf("%s: answered %v, want %v with %d registrations", tc.name, resp, tc.status, tc.regs)
		}
		if tc.status == pb.Message_OK && (r.StatusText != nil || !bytes.Equal(r.Cookie, tc.cookie) || (tc.cookie == nil) != (r.Cookie == nil)) {
			t.Fatalf("%s: %v, want cookie %x and no statusText", tc.name, r, tc.cookie)
		}
		if tc.status != pb.Message_OK && (r.GetStatusText() != tc.text || r.Cookie != nil) {
			t.Fatalf("%s: %v, want statusText %q and no cookie", tc.name, r, tc.text)
		}
	}
}

func TestWakuPointRegistrationNamespaces(t *testing.T) {
	_, info, _ := newWakuPoint(t)
	a, b := testhost.New(t), testhost.New(t)
	wa, wb := openWakuStream(t, a, info), openWakuStream(t, b, info)
	for _, r := range []struct {
		w  *wakuStream
		h  host.Host
		ns string
	}{{wa, a, "alpha"}, {wb, b, "beta"}, {wb, b, "alpha"}, {wa, a, "beta"}} {
		if resp := r.w.ask(wakuRegister(proto.String(r.ns), sealed(t, r.h, scripted.Standard), proto.Uint64(60))); resp.GetRegisterResponse().GetStatus() != pb.Message_OK {
			t.Fatal(resp)
		}
	}
	namespaces := func(d *pb.Message_DiscoverResponse) []string {
		var out []string
		for _, r := range d.GetRegistrations() {
			if r.Ns == nil || r.Ttl == nil || r.GetTtl() == 0 || r.GetTtl() > 60 {
				t.Fatalf("registration %v: want ns written and the remaining ttl", r)
			}
			out = append(out, r.GetNs())
		}
		return out
	}
	// One namespace asked: an empty ns on each registration.
	if got := namespaces(wa.ask(wakuDiscover(proto.String("alpha"), 10, nil)).GetDiscoverResponse()); fmt.Sprint(got) != "[ ]" {
		t.Fatalf("namespaces in alpha: %q, want two empty ones", got)
	}
	// Every namespace, by ns absent or empty: each response labels all its
	// registrations with the namespace of its last one.
	for _, ns := range []*string{nil, proto.String("")} {
		page1 := wa.ask(wakuDiscover(ns, 3, nil)).GetDiscoverResponse()
		page2 := wa.ask(wakuDiscover(ns, 3, page1.GetCookie())).GetDiscoverResponse()
		if got := fmt.Sprint(namespaces(page1), namespaces(page2)); got != "[alpha alpha alpha] [beta]" {
			t.Fatalf("every namespace (ns %v): %s, want [alpha alpha alpha] [beta]", ns, got)
		}
	}
}

func TestWakuPointUnregisterWithoutNamespace(t *testing.T) {
	point, info, _ := newWakuPoint(t)
	h := testhost.New(t)
	w := openWakuStream(t, h, info)
	for _, ns := range []string{"alpha", "beta", "gamma"} {
		w.ask(wakuRegister(proto.String(ns), sealed(t, h, scripted.Standard), nil))
	}
	// No answer to UNREGISTER: the next answer on the stream is the
	// DISCOVER's.
	w.send(&pb.Message{Type: pb.Message_UNREGISTER.Enum(), Unregister: &pb.Message_Unregister{Ns: proto.String("alpha")}})
	if resp := w.ask(wakuDiscover(nil, 10, nil)); resp.GetType() != pb.Message_DISCOVER_RESPONSE || len(resp.GetDiscoverResponse().GetRegistrations()) != 2 {
		t.Fatalf("after UNREGISTER alpha: %v, want 2 registrations left", resp)
	}
	w.send(&pb.Message{Type: pb.Message_UNREGISTER.Enum(), Unregister: &pb.Message_Unregister{}})
	if resp := w.ask(wakuDiscover(nil, 10, nil)); len(resp.GetDiscoverResponse().GetRegistrations()) != 0 {
		t.Fatalf("after UNREGISTER without ns: %v, want nothing left", resp)
	}
	if n := heldBy(point, h.ID(), ""); n != 0 {
		t.Fatalf("the point holds %d registrations", n)
	}
}

func TestWakuPointPeerCap(t *testing.T) {
	_, info, _ := newWakuPoint(t, scripted.WithWakuPeerCap(2))
	h := testhost.New(t)
	w := openWakuStream(t, h, info)
	status := func(ns string) pb.Message_ResponseStatus {
		return w.ask(wakuRegister(proto.String(ns), sealed(t, h, scripted.Standard), nil)).GetRegisterResponse().GetStatus()
	}
	// It refuses once a peer holds more than the cap: one over it is let in.
	for _, ns := range []string{"a", "b", "c"} {
		if st := status(ns); st != pb.Message_OK {
			t.Fatalf("REGISTER %s: %v", ns, st)
		}
	}
	for _, ns := range []string{"d", "a"} { // a new namespace, then a refresh
		if st := status(ns); st != pb.Message_E_NOT_AUTHORIZED {
			t.Fatalf("REGISTER %s over the cap: %v, want E_NOT_AUTHORIZED", ns, st)
		}
	}
}

// A client that half-closes right after its REGISTER makes the point reset
// the stream just after it answers: the registration is made, the answer
// mostly lost. Read as Go clients read (go-msgio's pbio, the varint a byte
// at a time), the answer is lost whenever the reset lands between two reads.
func TestWakuPointResetsAfterHalfClose(t *testing.T) {
	point, info, _ := newWakuPoint(t)
	h := testhost.New(t)
	ctx := ctxT(t)
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	const n = 20
	answered := 0
	for i := range n {
		s, err := h.NewStream(ctx, info.ID, rendezvous.ProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.SetDeadline(time.Now().Add(wakuTimeout))
		if err := scripted.WriteFrame(s, wakuRegister(proto.String(fmt.Sprintf("half-%d", i)), sealed(t, h, scripted.Standard), nil)); err != nil {
			t.Fatal(err)
		}
		_ = s.CloseWrite()
		rd := pbio.NewDelimitedReader(s, 1<<20)
		var resp pb.Message
		err = rd.ReadMsg(&resp)
		if err == nil {
			answered++
			err = rd.ReadMsg(&resp) // what follows an answer read in time
		}
		if !errors.Is(err, network.ErrReset) {
			t.Fatalf("REGISTER %d: the stream ended with %v, want a reset", i, err)
		}
		_ = s.Reset()
	}
	// Each was carried out before its answer was written.
	if held := heldBy(point, h.ID(), ""); held != n {
		t.Fatalf("the point holds %d registrations, want %d", held, n)
	}
	if answered == n {
		t.Fatalf("all %d answers read after a half-close: the point did not reset the streams", n)
	}
	t.Logf("%d of %d answers survived the reset", answered, n)
}

// A Waku point refuses a record with more than 2048 bytes of addresses,
// though the REGISTER fits in the 4096 bytes our client keeps it under.
func TestWakuPointTakesOurRecordWithManyAddresses(t *testing.T) {
	point, info, _ := newWakuPoint(t)
	h := testhost.New(t)
	c, err := client.New(h, client.WithPoints(info), client.WithTTLPolicy(wideTTL),
		client.WithAddrs(func() []ma.Multiaddr { return tcpAddrs(300) })) // 2400 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.RegisterAt(ctxT(t), info.ID, "many", time.Hour); err != nil {
		t.Fatalf("REGISTER with 300 addresses: %v", err)
	}
	if heldBy(point, h.ID(), "many") != 1 {
		t.Fatal("the point holds no registration")
	}
}
