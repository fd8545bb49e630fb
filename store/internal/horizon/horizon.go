// Package horizon holds what the database-backed stores share about time:
// instants as Unix nanoseconds, and the latest "now" their callers passed,
// up to which their sweepers may remove expired registrations.
package horizon

import (
	"math"
	"sync/atomic"
	"time"
)

// Nanos is t in Unix nanoseconds, clamped to the int64 range.
func Nanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// Horizon is the greatest instant, in Unix nanoseconds, observed so far.
// Its zero value is ready to use.
type Horizon struct{ v atomic.Int64 }

// Observe moves the horizon to now if now is later.
func (h *Horizon) Observe(now int64) {
	for {
		cur := h.v.Load()
		if now <= cur || h.v.CompareAndSwap(cur, now) {
			return
		}
	}
}

// Load returns the horizon.
func (h *Horizon) Load() int64 { return h.v.Load() }
