package client

import (
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
)

// watch follows the host's event bus: a change of its addresses renews
// every registration at once, and, with WithAutoPoints, identified peers
// serving the protocol become points.
func (c *Client) watch() error {
	types := []any{new(event.EvtLocalAddressesUpdated)}
	if c.autoPoints {
		types = append(types,
			new(event.EvtPeerIdentificationCompleted),
			new(event.EvtPeerProtocolsUpdated),
			new(event.EvtPeerConnectednessChanged))
	}
	sub, err := c.host.EventBus().Subscribe(types, eventbus.Name("rendezvous-client"), eventbus.BufSize(64))
	if err != nil {
		return fmt.Errorf("rendezvous client: subscribing to host events: %w", err)
	}
	if c.autoPoints {
		// Peers identified before the subscription.
		for _, p := range c.host.Network().Peers() {
			if ps, err := c.host.Peerstore().SupportsProtocols(p, c.protocol); err == nil && len(ps) > 0 {
				c.setAutoPoint(p, true)
			}
		}
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer sub.Close()
		for {
			select {
			case <-c.ctx.Done():
				return
			case ev, ok := <-sub.Out():
				if !ok {
					return
				}
				c.handleEvent(ev)
			}
		}
	}()
	return nil
}

func (c *Client) handleEvent(ev any) {
	switch ev := ev.(type) {
	case event.EvtLocalAddressesUpdated:
		c.pokeKeepers()
	case event.EvtPeerIdentificationCompleted:
		serves := slices.Contains(ev.Protocols, c.protocol)
		if serves && c.host.Network().Connectedness(ev.Peer) != network.Connected {
			return
		}
		c.setAutoPoint(ev.Peer, serves)
	case event.EvtPeerProtocolsUpdated:
		switch {
		case slices.Contains(ev.Added, c.protocol):
			c.setAutoPoint(ev.Peer, true)
		case slices.Contains(ev.Removed, c.protocol):
			c.setAutoPoint(ev.Peer, false)
		}
	case event.EvtPeerConnectednessChanged:
		if ev.Connectedness != network.Connected {
			c.setAutoPoint(ev.Peer, false)
		}
	}
}

// setAutoPoint adds or removes a point found by protocol. A new point is
// registered at by every keeper at once.
func (c *Client) setAutoPoint(p peer.ID, serves bool) {
	if p == c.host.ID() {
		return
	}
	c.mu.Lock()
	_, had := c.auto[p]
	if serves {
		c.auto[p] = struct{}{}
	} else {
		delete(c.auto, p)
	}
	c.mu.Unlock()
	if serves && !had {
		c.log.Debug("rendezvous: point found", "point", p)
		c.pokeKeepers()
	}
}

// pokeKeepers wakes every keeper to look whether a point needs a REGISTER.
func (c *Client) pokeKeepers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.keepers {
		k.poke()
	}
}
