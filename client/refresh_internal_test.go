package client

import (
	"testing"
	"time"
)

func TestRefreshAfter(t *testing.T) {
	for _, tc := range []struct{ ttl, want time.Duration }{
		{2 * time.Hour, 105 * time.Minute}, // 7/8
		{16 * time.Second, 14 * time.Second},
		{4 * time.Second, 3 * time.Second}, // a second of margin
		{2 * time.Second, time.Second},     // but never before half
		{time.Second, 500 * time.Millisecond},
	} {
		if got := refreshAfter(tc.ttl); got != tc.want {
			t.Errorf("refreshAfter(%v) = %v, want %v", tc.ttl, got, tc.want)
		}
	}
}

func TestBackoffGrowsJitteredAndCapped(t *testing.T) {
	c := &Client{minBackoff: time.Second, maxBackoff: 10 * time.Second}
	for n, ceiling := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 5: 10 * time.Second, 1000: 10 * time.Second} {
		for range 100 {
			if d := c.backoff(n); d < ceiling/2 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, ceiling/2, ceiling)
			}
		}
	}
}
