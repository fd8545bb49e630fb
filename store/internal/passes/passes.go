// Package passes lets a test wait for a store's background goroutine to
// finish a given number of passes, instead of polling what the passes do.
package passes

import (
	"sync/atomic"
	"testing"
	"time"
)

// Counter counts passes. Its Done method is the hook a store calls at the
// end of each pass; it never blocks.
type Counter struct {
	n       atomic.Int64
	changed chan struct{}
}

// New returns a counter at zero.
func New() *Counter { return &Counter{changed: make(chan struct{}, 1)} }

// Done records one finished pass.
func (c *Counter) Done() {
	c.n.Add(1)
	select {
	case c.changed <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Count is the number of passes finished so far.
func (c *Counter) Count() int64 { return c.n.Load() }

// WaitFor returns once n passes have finished, and fails t if that takes
// longer than timeout.
func (c *Counter) WaitFor(t testing.TB, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for c.n.Load() < n {
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("%d passes finished in %v, want %d", c.n.Load(), timeout, n)
		}
	}
}
