package horizon

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestNanosClamps(t *testing.T) {
	if got := Nanos(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); got != math.MaxInt64 {
		t.Fatalf("year 3000: %d, want MaxInt64", got)
	}
	if got := Nanos(time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)); got != math.MinInt64 {
		t.Fatalf("year 1000: %d, want MinInt64", got)
	}
	now := time.Now()
	if Nanos(now) != now.UnixNano() {
		t.Fatal("now is not its Unix nanoseconds")
	}
}

func TestHorizonKeepsTheGreatest(t *testing.T) {
	var h Horizon
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 1000 {
				h.Observe(int64(i*1000 + j))
			}
		})
	}
	wg.Wait()
	h.Observe(5)
	if got := h.Load(); got != 7999 {
		t.Fatalf("horizon %d, want 7999", got)
	}
}
