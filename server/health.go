package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// ErrWritesFailing is what Server.Healthy returns while the store fails
// the point's writes.
var ErrWritesFailing = errors.New("rendezvous server: the store is failing writes")

// storeHealth follows the outcome of the point's writes to its store: the
// point is unhealthy from a write that failed for the store's sake (not a
// refusal on a limit) until a write succeeds again.
type storeHealth struct {
	mu      sync.Mutex
	lastErr error // of the last write; nil if it succeeded
}

func (h *storeHealth) wrote(err error) {
	h.mu.Lock()
	h.lastErr = err
	h.mu.Unlock()
}

// Healthy reports whether the point can serve: nil, or ErrWritesFailing
// (wrapping the store's last error) while the store fails its writes. An
// operator's readiness probe should use it: a point whose store is full or
// gone still answers DISCOVERs from what it reads, but refuses every
// REGISTER.
func (s *Server) Healthy() error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if s.health.lastErr != nil {
		return errors.Join(ErrWritesFailing, s.health.lastErr)
	}
	return nil
}

// logLimiter lets through at most one log line per key and interval, and
// says with the next one how many it held back, so a fault that every
// request meets (a full disk) shows in the log without flooding it.
type logLimiter struct {
	interval time.Duration
	mu       sync.Mutex
	keys     map[string]*logSlot
}

type logSlot struct {
	last       time.Time
	suppressed int
}

func newLogLimiter(interval time.Duration) *logLimiter {
	return &logLimiter{interval: interval, keys: make(map[string]*logSlot)}
}

// log writes msg at level under key unless a line of that key was written
// less than an interval ago.
func (l *logLimiter) log(log *slog.Logger, level slog.Level, key, msg string, now time.Time, args ...any) {
	l.mu.Lock()
	slot := l.keys[key]
	if slot == nil {
		slot = &logSlot{}
		l.keys[key] = slot
	}
	if !slot.last.IsZero() && now.Sub(slot.last) < l.interval {
		slot.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := slot.suppressed
	slot.last, slot.suppressed = now, 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	log.Log(context.Background(), level, msg, args...)
}
