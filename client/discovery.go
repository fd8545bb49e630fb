package client

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/peer"
)

var _ discovery.Discovery = (*Client)(nil)

// Advertise implements discovery.Advertiser: it is Register in ns with the
// TTL of the discovery.TTL option (0 for the client's default), so the
// registration is kept alive until Unregister or Close. It returns the
// shortest TTL granted by a point, or an error if none granted it.
func (c *Client) Advertise(ctx context.Context, ns string, opts ...discovery.Option) (time.Duration, error) {
	var o discovery.Options
	if err := o.Apply(opts...); err != nil {
		return 0, fmt.Errorf("rendezvous client: discovery options: %w", err)
	}
	results, err := c.Register(ctx, ns, o.Ttl)
	if err != nil {
		return 0, err
	}
	var shortest time.Duration
	for _, r := range results {
		if r.Err == nil && (shortest == 0 || r.TTL < shortest) {
			shortest = r.TTL
		}
	}
	return shortest, nil
}

// FindPeers implements discovery.Discoverer: it asks every point for what
// is new in ns, then sends on the returned channel every live peer known
// there (at most the discovery.Limit option, if positive) and closes it.
// Unlike Discover it returns peers found by earlier calls too. It fails if
// no point answered and no peer is known.
func (c *Client) FindPeers(ctx context.Context, ns string, opts ...discovery.Option) (<-chan peer.AddrInfo, error) {
	var o discovery.Options
	if err := o.Apply(opts...); err != nil {
		return nil, fmt.Errorf("rendezvous client: discovery options: %w", err)
	}
	if err := checkDiscover(ns, o.Limit); err != nil {
		return nil, err
	}
	_, fetchErr := c.fetch(ctx, ns, o.Limit)
	regs := c.cached(ns, o.Limit)
	if len(regs) == 0 && fetchErr != nil {
		return nil, fetchErr
	}
	ch := make(chan peer.AddrInfo, len(regs))
	sent := make(map[peer.ID]bool, len(regs))
	for _, r := range regs {
		if !sent[r.Peer.ID] { // a peer in several namespaces, asking for all
			sent[r.Peer.ID] = true
			ch <- r.Peer
		}
	}
	close(ch)
	return ch, nil
}
