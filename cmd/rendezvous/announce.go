package main

import (
	"fmt"

	ma "github.com/multiformats/go-multiaddr"
)

// parseAddrs parses the multiaddrs given with --announce. Each must name a
// host and a transport, and none may carry /p2p/: serve appends its own
// peer ID.
func parseAddrs(values []string) ([]ma.Multiaddr, error) {
	out := make([]ma.Multiaddr, 0, len(values))
	for _, v := range values {
		a, err := ma.NewMultiaddr(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", v, err)
		}
		if _, err := a.ValueForProtocol(ma.P_P2P); err == nil {
			return nil, fmt.Errorf("%q: leave out /p2p/<peer id>, serve adds its own", v)
		}
		if len(a) < 2 {
			return nil, fmt.Errorf("%q: want a host and a transport, such as /dns4/rendezvous.example.com/tcp/4457", v)
		}
		out = append(out, a)
	}
	return out, nil
}
