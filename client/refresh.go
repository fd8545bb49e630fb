package client

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// refreshMargin is the least time a refresh is sent before the granted TTL
// runs out, as long as that leaves half the TTL.
const refreshMargin = time.Second

// idleWait is how long a keeper with nothing scheduled sleeps before it
// looks again; events wake it sooner.
const idleWait = time.Hour

// keeper keeps the registration of the host in one namespace alive at
// every point.
type keeper struct {
	c    *Client
	ns   string
	ttl  time.Duration
	kick chan struct{} // wakes the keeper: addresses or points changed

	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	mu            sync.Mutex
	state         map[peer.ID]*pointState
	buildFailures int
	retryAt       time.Time // when a failed build of the REGISTER is retried
}

// pointState is the registration at one point.
type pointState struct {
	seq      uint64        // the sequence number of the record last sent there
	granted  time.Duration // the TTL it granted last, zero if it never did
	next     time.Time     // when to register there again
	failures int           // consecutive failures
}

func newKeeper(c *Client, ns string, ttl time.Duration) *keeper {
	return &keeper{
		c:     c,
		ns:    ns,
		ttl:   ttl,
		kick:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		state: make(map[peer.ID]*pointState),
	}
}

// start runs the keeper until parent ends or stop is called.
func (k *keeper) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	k.cancel = cancel
	k.poke() // for points found while Register was busy
	go k.run(ctx)
}

// stop ends a started keeper and waits for it.
func (k *keeper) stop() {
	k.cancel()
	<-k.done
}

// poke makes the keeper look at once whether a point needs a REGISTER.
func (k *keeper) poke() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

func (k *keeper) run(ctx context.Context) {
	defer close(k.done)
	timer := time.NewTimer(k.wait())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.kick:
		case <-timer.C:
		}
		k.round(ctx, false)
		timer.Reset(k.wait())
	}
}

// wait returns the time until the next REGISTER is due.
func (k *keeper) wait() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	next := k.retryAt
	for _, st := range k.state {
		if next.IsZero() || st.next.Before(next) {
			next = st.next
		}
	}
	if next.IsZero() {
		return idleWait
	}
	return max(time.Until(next), 0)
}

// round registers at the points where it is due: those never registered
// at, those holding an older record, and those whose refresh time has
// come; every point if force. It returns their results.
func (k *keeper) round(ctx context.Context, force bool) Results {
	req, seq, err := k.c.registerRequest(k.ns, k.ttl)
	if err != nil {
		k.mu.Lock()
		k.buildFailures++
		k.retryAt = time.Now().Add(k.c.backoff(k.buildFailures))
		k.mu.Unlock()
		k.c.log.Warn("rendezvous: building REGISTER", "ns", k.ns, "err", err)
		return nil
	}
	points := k.c.Points()
	now := time.Now()
	var due []peer.ID
	k.mu.Lock()
	k.buildFailures, k.retryAt = 0, time.Time{}
	for p := range k.state {
		if !containsPeer(points, p) {
			delete(k.state, p)
		}
	}
	for _, p := range points {
		st := k.state[p]
		if force || st == nil || st.seq != seq || !now.Before(st.next) {
			due = append(due, p)
		}
	}
	k.mu.Unlock()
	if len(due) == 0 {
		return nil
	}

	results := k.c.fanOut(ctx, due, func(ctx context.Context, p peer.ID) (time.Duration, error) {
		return k.c.registerAt(ctx, p, req)
	})

	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range results {
		st := k.state[r.Point]
		if st == nil {
			st = &pointState{}
			k.state[r.Point] = st
		}
		st.seq = seq
		if r.Err == nil {
			st.granted, st.failures = r.TTL, 0
			st.next = now.Add(refreshAfter(r.TTL))
			continue
		}
		st.failures++
		st.next = time.Now().Add(k.c.backoff(st.failures))
		if ctx.Err() == nil {
			k.c.log.Debug("rendezvous: registering", "point", r.Point, "ns", k.ns, "failures", st.failures, "err", r.Err)
		}
	}
	return results
}

// refreshAfter is when to refresh a registration granted for ttl: at 7/8
// of it, as go-libp2p's discovery util does, but at least refreshMargin
// before it runs out as long as that leaves half of it.
func refreshAfter(ttl time.Duration) time.Duration {
	d := ttl * 7 / 8
	if ttl-d < refreshMargin {
		d = max(ttl-refreshMargin, ttl/2)
	}
	return d
}

// backoff is the wait before the next attempt after n consecutive
// failures: exponential from minBackoff, capped at maxBackoff, with the
// upper half jittered.
func (c *Client) backoff(n int) time.Duration {
	d := c.minBackoff
	for i := 1; i < n && d < c.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.maxBackoff)
	return d/2 + rand.N(d/2+1)
}
