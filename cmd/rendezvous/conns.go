package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
)

// limitNegotiation makes every inbound stream of h agree on a protocol
// within timeout or be reset. go-libp2p's host gives negotiation 10 s and
// libp2p.New has no option for it, so the host's handler of new streams is
// handed streams whose deadline it cannot push past timeout until it
// clears it, which it does once the protocol is agreed.
func limitNegotiation(h host.Host, timeout time.Duration) error {
	sw, ok := h.Network().(interface{ StreamHandler() network.StreamHandler })
	if !ok {
		return errors.New("the host's network does not expose its stream handler")
	}
	next := sw.StreamHandler()
	if next == nil {
		return errors.New("the host has no stream handler")
	}
	h.Network().SetStreamHandler(func(s network.Stream) {
		ns := &negotiatingStream{Stream: s, deadline: time.Now().Add(timeout)}
		if err := s.SetDeadline(ns.deadline); err != nil {
			_ = s.Reset()
			return
		}
		next(ns)
	})
	return nil
}

// negotiatingStream is an inbound stream whose deadline cannot be set past
// its negotiation deadline until it is cleared once.
type negotiatingStream struct {
	network.Stream
	deadline time.Time

	mu         sync.Mutex
	negotiated bool
}

func (s *negotiatingStream) SetDeadline(t time.Time) error {
	s.mu.Lock()
	if !s.negotiated {
		if t.IsZero() {
			s.negotiated = true
		} else if t.After(s.deadline) {
			t = s.deadline
		}
	}
	s.mu.Unlock()
	return s.Stream.SetDeadline(t)
}

// closeIdleConns closes, until ctx is done, the inbound connections of h
// that carry no stream for timeout: each is closed between timeout and
// 1.25 × timeout after its last stream ended (or it was opened).
func closeIdleConns(ctx context.Context, h host.Host, timeout time.Duration) {
	interval := min(max(timeout/4, 50*time.Millisecond), 15*time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	idleSince := make(map[network.Conn]time.Time)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		still := make(map[network.Conn]time.Time, len(idleSince))
		for _, c := range h.Network().Conns() {
			if c.Stat().Direction != network.DirInbound || len(c.GetStreams()) > 0 {
				continue
			}
			since, ok := idleSince[c]
			if !ok {
				since = now
			}
			if now.Sub(since) >= timeout {
				_ = c.Close()
				continue
			}
			still[c] = since
		}
		idleSince = still
	}
}
