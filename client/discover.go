package client

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous"
)

// maxCookieSize bounds a cookie the client keeps; a larger one is not sent
// back.
const maxCookieSize = 4096

// cookieKey is the cookie cache key: a point and the namespace asked.
type cookieKey struct {
	point peer.ID
	ns    string
}

// entryKey identifies a registration: a peer in a namespace. For a given
// namespace it is the peer; discovering every namespace, a peer registered
// in two namespaces is two registrations.
type entryKey struct {
	ns string
	id peer.ID
}

// nsCache is what the client knows of the registrations in one namespace
// asked (or every namespace, for "").
type nsCache struct {
	entries map[entryKey]*entry
}

type entry struct {
	reg       Registration
	expires   time.Time
	delivered bool   // returned by Discover since it last changed
	order     uint64 // when it last changed, for a stable order
}

// Discover asks every point at once for registrations in ns (every
// namespace if empty) and returns what is new since the last Discover in
// ns: a cookie is kept per point and namespace, results are merged and
// de-duplicated (a peer's record with the higher seq wins, then the longer
// remaining TTL), and the host's own registration is skipped. limit bounds
// the registrations returned (0 for no bound beyond the points' own); what
// is left over is returned by the next call.
//
// Paging at one point stops at a page with no new registration, an empty,
// unchanged or repeated cookie, or after WithMaxPages pages. A point that
// answers E_INVALID_NAMESPACE has no registrations. An invalid namespace or
// limit is returned before any I/O. Otherwise Discover returns a result per
// point, and an error wrapping ErrNoPointReached or ErrNoPoints if no point
// answered.
func (c *Client) Discover(ctx context.Context, ns string, limit int) ([]Registration, Results, error) {
	if err := checkDiscover(ns, limit); err != nil {
		return nil, nil, err
	}
	results, err := c.fetch(ctx, ns, limit)
	if errors.Is(err, ErrClosed) {
		return nil, nil, err
	}

	return c.collect(ns, limit, true), results, err
}

// cached returns the live registrations known in ns, at most limit if
// positive, in the order they were learnt.
func (c *Client) cached(ns string, limit int) []Registration {
	return c.collect(ns, limit, false)
}

// collect returns the live registrations known in ns, at most limit if
// positive, in the order they were learnt; with fresh, only those no
// Discover has returned yet, which it marks returned.
func (c *Client) collect(ns string, limit int, fresh bool) []Registration {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var live []*entry
	if nc := c.cache[ns]; nc != nil {
		for _, e := range nc.entries {
			if now.Before(e.expires) && !(fresh && e.delivered) {
				live = append(live, e)
			}
		}
	}
	slices.SortFunc(live, func(a, b *entry) int { return cmp.Compare(a.order, b.order) })
	if limit > 0 && len(live) > limit {
		live = live[:limit]
	}
	regs := make([]Registration, 0, len(live))
	for _, e := range live {
		e.delivered = e.delivered || fresh
		regs = append(regs, e.live(now))
	}
	return regs
}

// live returns the registration with the TTL that remains at now.
func (e *entry) live(now time.Time) Registration {
	r := e.reg
	r.TTL = e.expires.Sub(now).Truncate(time.Second)
	return r
}

// fetch asks every point for what is new in ns and merges it into the
// cache.
func (c *Client) fetch(ctx context.Context, ns string, limit int) (Results, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.mu.Unlock()
	points := c.Points()
	found := make([][]Registration, len(points))
	index := make(map[peer.ID]int, len(points))
	for i, p := range points {
		index[p] = i
	}
	results := c.fanOut(ctx, points, func(ctx context.Context, p peer.ID) (time.Duration, error) {
		regs, err := c.pages(ctx, p, ns, limit)
		found[index[p]] = regs
		return 0, err
	})
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneCookies(points)
	if nc := c.cache[ns]; nc != nil {
		nc.prune(now)
	}
	for _, regs := range found {
		for _, r := range regs {
			c.merge(ns, r, now)
		}
	}
	return results, results.noneOK()
}

// pages asks one point for what is new in ns, following cookies page after
// page, and keeps the last cookie for the next call. It returns the
// registrations of every page, even when a later page failed.
func (c *Client) pages(ctx context.Context, point peer.ID, ns string, limit int) ([]Registration, error) {
	key := cookieKey{point, ns}
	c.mu.Lock()
	cookie := c.cookies[key]
	c.mu.Unlock()

	var (
		all      []Registration
		seen     = make(map[entryKey]uint64) // the highest seq seen per registration in this call
		cookies  [][]byte
		retried  bool
		finalErr error
		// pageLimit is what each DISCOVER asks for; halved when a page
		// comes larger than the client reads (a point that sends all it
		// is asked for, as rust-libp2p's does).
		pageLimit = cmp.Or(limit, DefaultDiscoverLimit)
	)
	for range c.maxPages {
		regs, next, err := c.discoverAt(ctx, point, ns, pageLimit, cookie)
		if err != nil {
			if errors.Is(err, errResponseTooLarge) && pageLimit > 1 {
				pageLimit /= 2
				continue
			}
			switch rendezvous.StatusOf(err) {
			case rendezvous.StatusInvalidNamespace:
				err = nil // nim-libp2p's "nobody registered there"
			case rendezvous.StatusInvalidCookie:
				if !retried && len(cookie) > 0 {
					retried, cookie = true, nil // the point forgot us: start over
					continue
				}
			}
			finalErr = err
			break
		}
		news := 0
		for _, r := range regs {
			k := entryKey{r.Namespace, r.Peer.ID}
			if s, ok := seen[k]; ok && s >= r.Seq {
				continue
			}
			seen[k] = r.Seq
			all = append(all, r)
			news++
		}
		stop := news == 0 || len(next) == 0 || len(next) > maxCookieSize ||
			bytes.Equal(next, cookie) || slices.ContainsFunc(cookies, func(b []byte) bool { return bytes.Equal(b, next) }) ||
			(limit > 0 && len(all) >= limit)
		if len(next) > 0 && len(next) <= maxCookieSize {
			cookie = next
			cookies = append(cookies, next)
		}
		if stop {
			break
		}
	}
	c.mu.Lock()
	if len(cookie) > 0 {
		c.cookies[key] = cookie
	} else {
		delete(c.cookies, key)
	}
	c.mu.Unlock()
	return all, finalErr
}

// pruneCookies forgets the cookies of points no longer used.
func (c *Client) pruneCookies(points []peer.ID) {
	for k := range c.cookies {
		if !containsPeer(points, k.point) {
			delete(c.cookies, k)
		}
	}
}

// merge adds r, found asking for ns, to the cache: a registration not known
// (or expired) is new; a record with a higher seq replaces the known one and
// is new again; the same record with a longer remaining TTL extends it.
func (c *Client) merge(ns string, r Registration, now time.Time) {
	if r.Peer.ID == c.host.ID() {
		return
	}
	nc := c.cache[ns]
	if nc == nil {
		nc = &nsCache{entries: make(map[entryKey]*entry)}
		c.cache[ns] = nc
	}
	k := entryKey{r.Namespace, r.Peer.ID}
	expires := now.Add(r.TTL)
	e := nc.entries[k]
	switch {
	case e == nil || !now.Before(e.expires):
		if e == nil && len(nc.entries) >= c.maxCachedPeers {
			nc.prune(now)
			if len(nc.entries) >= c.maxCachedPeers {
				return
			}
		}
		c.order++
		nc.entries[k] = &entry{reg: r, expires: expires, order: c.order}
	case r.Seq > e.reg.Seq:
		c.order++
		e.reg, e.expires, e.delivered, e.order = r, expires, false, c.order
	case r.Seq == e.reg.Seq && expires.After(e.expires):
		e.expires = expires
		e.reg.Point = r.Point
	}
}

// prune drops the expired registrations.
func (nc *nsCache) prune(now time.Time) {
	for k, e := range nc.entries {
		if !now.Before(e.expires) {
			delete(nc.entries, k)
		}
	}
}
