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

// idleConns closes the inbound connections of a host that carry no stream
// for a while. A connection is busy while it holds a stream and for the
// timeout after its last inbound stream began: a client that opens a short
// stream per request is seldom caught holding one, and must not be closed
// between two requests.
type idleConns struct {
	h       host.Host
	timeout time.Duration

	mu         sync.Mutex
	lastStream map[network.Conn]time.Time
}

// watchIdleConns starts noting when each inbound stream of h begins; run
// closes the idle connections.
func watchIdleConns(h host.Host, timeout time.Duration) (*idleConns, error) {
	ic := &idleConns{h: h, timeout: timeout, lastStream: make(map[network.Conn]time.Time)}
	sw, ok := h.Network().(interface{ StreamHandler() network.StreamHandler })
	if !ok {
		return nil, errors.New("the host's network does not expose its stream handler")
	}
	next := sw.StreamHandler()
	if next == nil {
		return nil, errors.New("the host has no stream handler")
	}
	h.Network().SetStreamHandler(func(s network.Stream) {
		ic.mu.Lock()
		ic.lastStream[s.Conn()] = time.Now()
		ic.mu.Unlock()
		next(s)
	})
	return ic, nil
}

// run closes, until ctx is done, the inbound connections that carry no
// stream and began none for the timeout: each is closed between timeout
// and 1.25 × timeout after its last stream began (or it was opened).
func (ic *idleConns) run(ctx context.Context) {
	interval := min(max(ic.timeout/4, 50*time.Millisecond), 15*time.Second)
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
		conns := ic.h.Network().Conns()
		open := make(map[network.Conn]bool, len(conns))
		still := make(map[network.Conn]time.Time, len(idleSince))
		ic.mu.Lock()
		for _, c := range conns {
			open[c] = true
			if c.Stat().Direction != network.DirInbound || len(c.GetStreams()) > 0 {
				continue
			}
			since, ok := idleSince[c]
			if !ok {
				since = now
			}
			if last := ic.lastStream[c]; last.After(since) {
				since = last
			}
			if now.Sub(since) >= ic.timeout {
				_ = c.Close()
				continue
			}
			still[c] = since
		}
		for c := range ic.lastStream {
			if !open[c] {
				delete(ic.lastStream, c)
			}
		}
		ic.mu.Unlock()
		idleSince = still
	}
}
