package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// defaultProgressInterval is how often `discover` reports its progress on
// stderr when stdout is not a terminal.
const defaultProgressInterval = time.Second

// progress reports how far a listing has got, as lines on w at most once
// per interval, checked as each page arrives. A nil *progress reports
// nothing.
type progress struct {
	w           io.Writer
	every       time.Duration
	start, last time.Time
	shown       bool // a line was printed, so the end is reported too
}

// newProgress returns a reporter on stderr when stdout is not a terminal
// (where its lines would interleave with the listing's) and every is
// positive, and nil otherwise.
func newProgress(stdout, stderr io.Writer, every time.Duration) *progress {
	if every <= 0 || isTerminal(stdout) {
		return nil
	}
	now := time.Now()
	return &progress{w: stderr, every: every, start: now, last: now}
}

// page is called after each page with the totals so far.
func (p *progress) page(pages, found int) {
	if p == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < p.every {
		return
	}
	p.last, p.shown = now, true
	elapsed := now.Sub(p.start)
	fmt.Fprintf(p.w, "discover: %d pages, %d registrations, %s, %s registrations/s\n", pages, found, elapsed.Round(time.Millisecond), rate(found, elapsed))
}

// done reports the totals of a listing that reported its progress.
func (p *progress) done(pages, found int) {
	if p == nil || !p.shown {
		return
	}
	elapsed := time.Since(p.start)
	fmt.Fprintf(p.w, "discover: done: %d pages, %d registrations in %s, %s registrations/s\n", pages, found, elapsed.Round(time.Millisecond), rate(found, elapsed))
}

func rate(n int, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(n)/d.Seconds())
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && fileIsTerminal(f)
}
