// Command connload makes a `rendezvous serve` it starts hold N client
// connections at once, each from its own loopback address (127.10.y.z, 250
// to a /24), and reports what serve holds for them: its resident memory,
// its goroutines and the connections its resource manager counts. It runs
// on loopback only, opens at most -n connections, and stops by itself
// within -timeout. scripts/connload.sh builds serve and runs it.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/transport"

	"github.com/rendezvous-p2p/rendezvous/internal/rawconn"
)

func main() {
	bin := flag.String("bin", "", "the rendezvous binary")
	n := flag.Int("n", 10000, "connections to hold (at most 62,500)")
	workers := flag.Int("workers", 64, "connections opened at once")
	hold := flag.Duration("hold", 5*time.Second, "how long to hold them before measuring")
	timeout := flag.Duration("timeout", 5*time.Minute, "stop after this long, whatever happens")
	flag.Parse()
	if *bin == "" || *n < 1 || *n > 62500 {
		fmt.Fprintln(os.Stderr, "usage: connload -bin PATH [-n N (1..62500)]")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *bin, *n, *workers, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "connload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, n, workers int, hold time.Duration) error {
	metricsAddr, err := freePort()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "connload")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	serve := exec.CommandContext(ctx, bin, "serve", "--store", "memory", "--data-dir", filepath.Join(dir, "data"),
		"--listen", "/ip4/127.0.0.1/tcp/0", "--metrics-addr", metricsAddr, "--limit-loopback",
		"--idle-conn-timeout", "10m", "--log-level", "warn")
	serve.Stderr = os.Stderr
	out, err := serve.StdoutPipe()
	if err != nil {
		return err
	}
	if err := serve.Start(); err != nil {
		return err
	}
	defer func() { _ = serve.Process.Kill(); _ = serve.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("serve printed no address: %w", err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	point, err := peer.AddrInfoFromString(strings.TrimSpace(line))
	if err != nil {
		return err
	}
	pid := serve.Process.Pid
	base, err := measure(pid, metricsAddr)
	if err != nil {
		return err
	}
	fmt.Printf("serve before: %s\n", base)

	start := time.Now()
	var (
		mu      sync.Mutex
		conns   []transport.CapableConn
		failed  atomic.Int64
		firstEr atomic.Value
		next    atomic.Int64
		wg      sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := rawconn.Dial(ctx, point, sourceAddr(i), nil, 30*time.Second)
				if err != nil {
					failed.Add(1)
					firstEr.CompareAndSwap(nil, err.Error())
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	fmt.Printf("opened %d connections from %d addresses in %v (%d failed%s)\n",
		len(conns), n, time.Since(start).Round(time.Millisecond), failed.Load(), firstError(&firstEr))
	select {
	case <-time.After(hold): // the connections settle (identify gives up on them)
	case <-ctx.Done():
		return ctx.Err()
	}
	open := 0
	for _, c := range conns {
		if !c.IsClosed() {
			open++
		}
	}
	held, err := measure(pid, metricsAddr)
	if err != nil {
		return err
	}
	fmt.Printf("serve holding %d open connections: %s\n", open, held)
	if open > 0 {
		fmt.Printf("per connection: %.1f KB of RSS, %.2f goroutines\n",
			float64(held.rssKB-base.rssKB)*1024/1000/float64(open), float64(held.goroutines-base.goroutines)/float64(open))
	}
	for _, c := range conns {
		_ = c.Close()
	}
	return nil
}

// sourceAddr is the i-th client address: 127.10.y.z, 250 to a /24.
func sourceAddr(i int) net.IP {
	return net.IPv4(127, byte(10+i/62500), byte(i/250%250), byte(i%250+1))
}

// usage is what serve holds at a moment.
type usage struct {
	rssKB, goroutines, inboundConns int
}

func (u usage) String() string {
	return fmt.Sprintf("RSS %.1f MB, %d goroutines, %d inbound connections in the resource manager",
		float64(u.rssKB)*1024/1e6, u.goroutines, u.inboundConns)
}

func measure(pid int, metricsAddr string) (usage, error) {
	var u usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			u.rssKB, _ = strconv.Atoi(f[1])
		}
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return u, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "go_goroutines "):
			u.goroutines = atoiField(l)
		case strings.HasPrefix(l, `libp2p_rcmgr_connections{dir="inbound",scope="system"}`):
			u.inboundConns = atoiField(l)
		}
	}
	return u, sc.Err()
}

func atoiField(l string) int {
	f := strings.Fields(l)
	v, _ := strconv.ParseFloat(f[len(f)-1], 64)
	return int(v)
}

func firstError(v *atomic.Value) string {
	if e, ok := v.Load().(string); ok {
		return "; first: " + e
	}
	return ""
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
