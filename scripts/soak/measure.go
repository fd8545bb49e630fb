package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sample is what serve holds at a moment: its resident memory and its
// /metrics, with the CPU time this program has used so far.
type sample struct {
	at      time.Time
	phase   phase
	rssKB   int
	m       metrics
	selfCPU time.Duration
}

// metrics are the series of a /metrics page, keyed by name and labels as
// written there (`name{label="value",...}`).
type metrics map[string]float64

var httpClient = &http.Client{Timeout: 10 * time.Second}

func takeSample(pid int, metricsAddr string, p phase) (sample, error) {
	s := sample{at: time.Now(), phase: p}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			s.rssKB, _ = strconv.Atoi(f[1])
		}
	}
	if s.m, err = scrape(metricsAddr); err != nil {
		return s, err
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.selfCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return s, nil
}

func scrape(metricsAddr string) (metrics, error) {
	resp, err := httpClient.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := make(metrics)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			m[l[:i]] = v
		}
	}
	return m, sc.Err()
}

// get sums the series of name that carry every one of labels (`k="v"`).
func (m metrics) get(name string, labels ...string) float64 {
	var sum float64
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(k, l) {
				ok = false
				break
			}
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// nonzero lists the series of name whose value is not 0, sorted.
func (m metrics) nonzero(name string) []string {
	var out []string
	for k, v := range m {
		if (k == name || strings.HasPrefix(k, name+"{")) && v != 0 {
			out = append(out, fmt.Sprintf("%s %.0f", k, v))
		}
	}
	sort.Strings(out)
	return out
}

// What a sample reads of serve.
func (s sample) goroutines() int { return int(s.m.get("go_goroutines")) }
func (s sample) conns() int {
	return int(s.m.get("libp2p_rcmgr_connections", `dir="inbound"`, `scope="system"`))
}
func (s sample) rendezvousStreams() int {
	return int(s.m.get("libp2p_rcmgr_streams", `dir="inbound"`, `scope="protocol"`, `protocol="/rendezvous/1.0.0"`))
}
func (s sample) negotiating() int {
	return int(s.m.get("libp2p_rcmgr_streams", `dir="inbound"`, `scope="transient"`))
}
func (s sample) registrations() int { return int(s.m.get("libp2p_rendezvous_registrations")) }
func (s sample) cpu() float64       { return s.m.get("process_cpu_seconds_total") }
func (s sample) rssMB() float64     { return float64(s.rssKB) * 1024 / 1e6 }

func (s sample) String() string {
	return fmt.Sprintf("%s %-6s RSS %6.1f MB, %5d goroutines, %4d connections, %4d rendezvous streams, %3d negotiating, %5d registrations",
		s.at.UTC().Format("15:04:05"), s.phase, s.rssMB(), s.goroutines(), s.conns(), s.rendezvousStreams(), s.negotiating(), s.registrations())
}

// loadAverage is the machine's load average over 1, 5 and 15 minutes.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
