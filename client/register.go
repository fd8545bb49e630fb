package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous"
)

// Result is the outcome of a request at one point.
type Result struct {
	// Point is the rendezvous point.
	Point peer.ID
	// TTL is the TTL the point granted to a REGISTER; zero otherwise.
	TTL time.Duration
	// Err is why the request failed at this point, nil if it did not. A
	// refusal by the point is a *rendezvous.Error with its status and text.
	Err error
}

// Results are the outcomes of one call at each point, in the order of
// Client.Points.
type Results []Result

// Err joins the errors of the points that failed, each prefixed with its
// point; nil if none failed.
func (rs Results) Err() error {
	var errs []error
	for _, r := range rs {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("point %s: %w", r.Point, r.Err))
		}
	}
	return errors.Join(errs...)
}

// OK counts the points that succeeded.
func (rs Results) OK() int {
	n := 0
	for _, r := range rs {
		if r.Err == nil {
			n++
		}
	}
	return n
}

// noneOK is the error of a call that no point answered: nil if some did.
func (rs Results) noneOK() error {
	if len(rs) == 0 {
		return ErrNoPoints
	}
	if rs.OK() > 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrNoPointReached, rs.Err())
}

// fanOut calls fn for each point, at most c.concurrency at once, and
// returns the results in the order of points.
func (c *Client) fanOut(ctx context.Context, points []peer.ID, fn func(context.Context, peer.ID) (time.Duration, error)) Results {
	results := make(Results, len(points))
	sem := make(chan struct{}, c.concurrency)
	var wg sync.WaitGroup
	for i, p := range points {
		results[i].Point = p
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i].Err = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i].TTL, results[i].Err = fn(ctx, p)
		})
	}
	wg.Wait()
	return results
}

// Register registers the host in ns at every point at once, for ttl (0 for
// the client's default TTL), and keeps the registrations alive: each is
// refreshed before the TTL granted by its point runs out, retried with
// backoff where it fails, and renewed at once when the host's addresses
// change, until Unregister or Close. Registering again in ns replaces the
// earlier registration.
//
// A namespace or TTL the client refuses is returned before any I/O, and
// nothing is kept. Otherwise Register returns a result per point, and an
// error wrapping ErrNoPointReached (or ErrNoPoints, with WithAutoPoints and
// no point connected yet) if no point granted the registration; it is kept
// and retried nonetheless.
func (c *Client) Register(ctx context.Context, ns string, ttl time.Duration) (Results, error) {
	if _, _, err := c.registerRequest(ns, ttl); err != nil {
		return nil, err
	}
	ttl, _ = c.checkTTL(ttl)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if len(c.points) == 0 && !c.autoPoints {
		c.mu.Unlock()
		return nil, ErrNoPoints
	}
	old := c.keepers[ns]
	delete(c.keepers, ns)
	c.mu.Unlock()
	if old != nil {
		old.stop()
	}

	k := newKeeper(c, ns, ttl)
	results := k.round(ctx, true)

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.unregisterAll(ns)
		return results, ErrClosed
	}
	old = c.keepers[ns]
	c.keepers[ns] = k
	k.start(c.ctx)
	c.mu.Unlock()
	if old != nil {
		old.stop() // a concurrent Register in ns
	}
	return results, results.noneOK()
}

// Unregister stops keeping the registration in ns alive and removes it at
// every point. It returns a result per point; the protocol has no answer
// to UNREGISTER, so a point fails only if it cannot be reached.
func (c *Client) Unregister(ctx context.Context, ns string) (Results, error) {
	if err := rendezvous.ValidateNamespace(ns); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	k := c.keepers[ns]
	delete(c.keepers, ns)
	c.mu.Unlock()
	if k != nil {
		k.stop()
	}
	results := c.fanOut(ctx, c.Points(), func(ctx context.Context, p peer.ID) (time.Duration, error) {
		return 0, c.unregisterAt(ctx, p, ns)
	})
	return results, results.noneOK()
}

// unregisterAll unregisters ns at every point, bounded by the request
// timeout, ignoring failures.
func (c *Client) unregisterAll(ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.requestTimeout)
	defer cancel()
	for _, r := range c.fanOut(ctx, c.Points(), func(ctx context.Context, p peer.ID) (time.Duration, error) {
		return 0, c.unregisterAt(ctx, p, ns)
	}) {
		if r.Err != nil {
			c.log.Debug("rendezvous: unregistering", "point", r.Point, "ns", ns, "err", r.Err)
		}
	}
}
