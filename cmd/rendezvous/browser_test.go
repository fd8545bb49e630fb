package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	ma "github.com/multiformats/go-multiaddr"
)

// The browser tests run serve's point (startPoint) on WebSocket,
// WebTransport and WebRTC-direct, and open web/index.html in tabs of a
// headless Chromium, driven over the DevTools protocol (chromedp). Each tab
// is a js-libp2p node that registers and discovers through the point.

// browserMinTTL is the point's shortest TTL in these tests: the pages ask
// for it, so that a refresh comes within seconds.
const browserMinTTL = 10 * time.Second

// chromiumPath returns the Chromium to drive, or skips the test (fails it
// in CI, where .ci/run installs Chromium).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RENDEZVOUS_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	missing(t, "no Chromium (chromium, chromium-browser or google-chrome on PATH, or RENDEZVOUS_TEST_CHROMIUM): apt-get install chromium")
	return ""
}

// missing skips the test for want of a tool, or fails it in CI.
func missing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// webPage builds the page (web/setup.sh: npm ci, then esbuild) and returns
// the directory to serve.
func webPage(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "web"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, "no "+tool+" on PATH: the page is built with npm (web/setup.sh)")
		}
	}
	out, err := exec.Command(filepath.Join(dir, "setup.sh")).CombinedOutput()
	if err != nil {
		t.Fatalf("web/setup.sh: %v\n%s", err, out)
	}
	return dir
}

// browserPoint starts serve's point on the three browser transports of
// 127.0.0.1 (and QUIC) with a short minimum TTL, and returns its full addresses by
// transport: "ws", "webtransport", "webrtc-direct".
func browserPoint(t *testing.T) map[string]ma.Multiaddr {
	t.Helper()
	var cfg serveConfig
	cfg.flags(flag.NewFlagSet("serve", flag.ContinueOnError))
	cfg.store = "memory"
	cfg.dataDir = t.TempDir()
	cfg.resources.MinTTL = browserMinTTL
	// WebTransport and WebRTC-direct share one UDP port, with QUIC, as in
	// the container image.
	udp := freePorts(t, "udp", 1)[0]
	cfg.listen.values = []string{
		"/ip4/127.0.0.1/tcp/0/ws",
		fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", udp),
		fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1/webtransport", udp),
		fmt.Sprintf("/ip4/127.0.0.1/udp/%d/webrtc-direct", udp),
	}
	p, err := startPoint(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	byTransport := map[string]ma.Multiaddr{}
	for _, a := range p.host.Addrs() {
		full := a.Encapsulate(ma.StringCast("/p2p/" + p.host.ID().String()))
		for _, name := range []string{"webtransport", "webrtc-direct", "ws"} {
			if _, err := a.ValueForProtocol(ma.ProtocolWithName(name).Code); err == nil {
				byTransport[name] = full
				break
			}
		}
	}
	for _, name := range []string{"ws", "webtransport", "webrtc-direct"} {
		if byTransport[name] == nil {
			t.Fatalf("the point listens on no %s address: %v", name, p.host.Addrs())
		}
	}
	return byTransport
}

// browser starts a headless Chromium for the test and returns the context
// its tabs derive from.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Without these, Chromium's own connections at start take the
		// network and the page's are refused here.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Tabs in the background keep their timers: the tests time
		// refreshes.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		// WebRTC gathers no loopback candidates unless told to, and the
		// point is on 127.0.0.1.
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.WindowSize(900, 640),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// The first Run starts the browser; its context must carry no timeout.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string]("navigator.userAgent")); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting %s: %v", path, err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// tab is one browser tab running the page.
type tab struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc
}

// openTab opens the page in a new tab of b, pointed at point.
func openTab(t *testing.T, b context.Context, site, name string, point ma.Multiaddr, ns string, ttl time.Duration) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b)
	tb := &tab{t: t, name: name, ctx: ctx, cancel: cancel}
	t.Cleanup(cancel)
	q := url.Values{
		"point": {point.String()},
		"ns":    {ns},
		"ttl":   {fmt.Sprint(int(ttl.Seconds()))},
		"every": {"1"},
	}
	// The first Run opens the tab, which lives as long as that Run's
	// context: tb.ctx, not a context with a timeout.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1")); err != nil {
		t.Fatalf("%s: opening a tab: %v", name, err)
	}
	if err := tb.run(chromedp.Navigate(site + "/index.html?" + q.Encode())); err != nil {
		t.Fatalf("%s: opening the page: %v", name, err)
	}
	return tb
}

// run runs one action on the tab, bounded to a minute.
func (tb *tab) run(a chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	_, err := chromedp.Run(ctx, a)
	return err
}

// eval evaluates a JavaScript expression on the page.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("%s: evaluating %s: %v", tb.name, expr, err)
	}
	return v
}

// waitFor waits until the JavaScript condition holds on the page, failing
// the test after timeout with what the page shows.
func (tb *tab) waitFor(what, cond string, timeout time.Duration) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		tb.t.Fatalf("%s: %s: not within %v (%v); the page shows:\n%s", tb.name, what, timeout, err, tb.text())
	}
}

// text is what the page shows, for failure messages.
func (tb *tab) text() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body.innerText"))
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	return s
}

func (tb *tab) peerID() string {
	tb.waitFor("a peer ID", "window.rendezvousState && window.rendezvousState.peerId !== ''", 30*time.Second)
	return eval[string](tb, "window.rendezvousState.peerId")
}

// sees waits until the tab lists peer among those it found.
func (tb *tab) sees(peer string, timeout time.Duration) {
	tb.t.Helper()
	tb.waitFor("finding "+peer, fmt.Sprintf("document.querySelector('#peers li[data-peer=%q]') !== null", peer), timeout)
}

// screenshot returns a PNG of the tab.
func (tb *tab) screenshot() []byte {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("%s: screenshot: %v", tb.name, err)
	}
	return b
}

var (
	shotDirOnce sync.Once
	shotDir     string
	shotDirErr  error
)

// saveShot writes a PNG to a directory of the test run's that outlives it,
// so that it can be looked at, and returns its path: the directory
// RENDEZVOUS_SCREENSHOT_DIR names (CI sets it, and lists what it holds once
// the tests are done), or a new temporary one.
func saveShot(t *testing.T, name string, png []byte) string {
	t.Helper()
	shotDirOnce.Do(func() {
		if shotDir = os.Getenv("RENDEZVOUS_SCREENSHOT_DIR"); shotDir == "" {
			shotDir, shotDirErr = os.MkdirTemp("", "rendezvous-browser-")
		}
	})
	if shotDirErr != nil {
		t.Fatal(shotDirErr)
	}
	path := filepath.Join(shotDir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sideBySide puts PNG screenshots next to each other in one PNG.
func sideBySide(shots ...[]byte) ([]byte, error) {
	var imgs []image.Image
	w, h := 0, 0
	const gap = 12
	for _, s := range shots {
		img, err := png.Decode(bytes.NewReader(s))
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
		w += img.Bounds().Dx() + gap
		h = max(h, img.Bounds().Dy())
	}
	out := image.NewRGBA(image.Rect(0, 0, w-gap, h))
	draw.Draw(out, out.Bounds(), &image.Uniform{color.RGBA{0x57, 0x60, 0x6a, 0xff}}, image.Point{}, draw.Src)
	x := 0
	for _, img := range imgs {
		draw.Draw(out, image.Rect(x, 0, x+img.Bounds().Dx(), img.Bounds().Dy()), img, img.Bounds().Min, draw.Src)
		x += img.Bounds().Dx() + gap
	}
	var buf bytes.Buffer
	err := png.Encode(&buf, out)
	return buf.Bytes(), err
}

// browserSetup is what every browser test needs: the page served on
// 127.0.0.1, the point and a browser.
func browserSetup(t *testing.T) (site string, points map[string]ma.Multiaddr, b context.Context) {
	t.Helper()
	chromiumPath(t)
	dir := webPage(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL, browserPoint(t), browser(t)
}

func TestBrowserTabsFindEachOther(t *testing.T) {
	site, points, b := browserSetup(t)
	for _, transport := range []string{"ws", "webtransport", "webrtc-direct"} {
		t.Run(transport, func(t *testing.T) {
			point := points[transport]
			ns := "tabs-" + transport
			a := openTab(t, b, site, "tab A", point, ns, time.Minute)
			c := openTab(t, b, site, "tab B", point, ns, time.Minute)
			idA, idB := a.peerID(), c.peerID()
			a.waitFor("registering", "document.body.dataset.phase === 'registered'", 30*time.Second)
			c.waitFor("registering", "document.body.dataset.phase === 'registered'", 30*time.Second)
			a.sees(idB, 15*time.Second)
			c.sees(idA, 15*time.Second)
			for _, tb := range []*tab{a, c} {
				if got := eval[string](tb, "window.rendezvousState.remoteAddr"); !strings.Contains(got, "/"+transport) {
					t.Errorf("%s is connected to the point at %s, want a %s address", tb.name, got, transport)
				}
			}
			shot, err := sideBySide(a.screenshot(), c.screenshot())
			if err != nil {
				t.Fatal(err)
			}
			path := saveShot(t, "tabs-"+transport+".png", shot)
			t.Logf("over %s, tab A (%s) and tab B (%s) found each other through %s; screenshot: %s", transport, idA, idB, point, path)
		})
	}
}

func TestBrowserRefreshesBeforeTTLAndUnregisters(t *testing.T) {
	site, points, b := browserSetup(t)
	point, ns := points["ws"], "refresh"
	a := openTab(t, b, site, "tab A", point, ns, browserMinTTL)
	c := openTab(t, b, site, "tab B", point, ns, browserMinTTL)
	idA := a.peerID()
	a.waitFor("registering", "document.body.dataset.phase === 'registered'", 30*time.Second)
	if got := eval[int](a, "window.rendezvousState.grantedTTL"); got != int(browserMinTTL.Seconds()) {
		t.Fatalf("granted TTL %d s, want %v", got, browserMinTTL)
	}
	c.sees(idA, 15*time.Second)
	// Tab A refreshes before its TTL ends; B, looking every second, must
	// still see it past the end of the first TTL.
	a.waitFor("a refresh", "window.rendezvousState.refreshes >= 1", 2*browserMinTTL)
	beyond := (browserMinTTL + 2*time.Second).Milliseconds()
	c.waitFor("seeing A past its first TTL",
		fmt.Sprintf("Number(document.querySelector('#peers li[data-peer=%q]')?.dataset.seenForMs ?? -1) > %d", idA, beyond),
		2*browserMinTTL)

	shot, err := sideBySide(a.screenshot(), c.screenshot())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("A refreshed, B still sees it: %s", saveShot(t, "refreshed.png", shot))

	// Just after a refresh, A leaves: B must see it gone long before that
	// registration would have expired.
	n := eval[int](a, "window.rendezvousState.refreshes")
	a.waitFor("the next refresh", fmt.Sprintf("window.rendezvousState.refreshes > %d", n), 2*browserMinTTL)
	if err := a.run(chromedp.Click(chromedp.CSS("#leave"))); err != nil {
		t.Fatal(err)
	}
	a.waitFor("leaving", "document.body.dataset.phase === 'left'", 5*time.Second)
	c.waitFor("A gone", fmt.Sprintf("document.querySelector('#peers li[data-peer=%q]') === null", idA), 5*time.Second)
	left := eval[float64](a, "Date.now() - window.rendezvousState.registeredAt")
	if left >= float64(browserMinTTL.Milliseconds()) {
		t.Fatalf("A disappeared %.0f ms after its last registration: by expiry, not by its UNREGISTER", left)
	}
	t.Logf("A refreshed %d times; B saw it continuously for over %v; after A's UNREGISTER B saw it gone %.0f ms into a %v registration", n+1, browserMinTTL, left, browserMinTTL)
}

func TestBrowserClosedTabDisappears(t *testing.T) {
	site, points, b := browserSetup(t)
	point, ns := points["ws"], "closing"
	a := openTab(t, b, site, "tab A", point, ns, browserMinTTL)
	c := openTab(t, b, site, "tab B", point, ns, browserMinTTL)
	idA := a.peerID()
	c.sees(idA, 20*time.Second)
	start := time.Now()
	a.cancel() // closes the tab: its UNREGISTER on pagehide, or its TTL, ends the registration
	c.waitFor("A gone after its tab closed", fmt.Sprintf("document.querySelector('#peers li[data-peer=%q]') === null", idA), browserMinTTL+5*time.Second)
	t.Logf("B saw A gone %v after A's tab closed (TTL %v: sooner means A's UNREGISTER on pagehide got out, else the registration expired)", time.Since(start).Round(100*time.Millisecond), browserMinTTL)
}

func TestBrowserShowsRefusal(t *testing.T) {
	site, points, b := browserSetup(t)
	a := openTab(t, b, site, "tab A", points["ws"], "refused", browserMinTTL/2)
	a.waitFor("the refusal", "document.body.dataset.phase === 'refused'", 30*time.Second)
	msg := eval[string](a, "document.getElementById('error').textContent")
	if !strings.Contains(msg, "E_INVALID_TTL") {
		t.Fatalf("the page says %q, want E_INVALID_TTL", msg)
	}
	t.Logf("a TTL of %v below the point's minimum %v: the page says %q; screenshot: %s", browserMinTTL/2, browserMinTTL, msg, saveShot(t, "refused.png", a.screenshot()))
}
