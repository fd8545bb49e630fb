package client_test

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/client"
)

// A host advertises itself in a namespace and finds the others there.
func Example() {
	h, err := libp2p.New()
	if err != nil {
		panic(err)
	}
	defer h.Close()
	point, err := peer.AddrInfoFromString("/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWJEDuDWdG4NrTyrUMth9rvypQDrbPu7nEcryaKmrjie6i")
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	c, err := client.New(h, client.WithPoints(*point))
	if err != nil {
		panic(err)
	}
	defer c.Close() // stops refreshing and unregisters
	if _, err := c.Register(ctx, "my-app", 0); err != nil {
		fmt.Println("no point took the registration yet; it is retried:", err)
	}
	regs, _, err := c.Discover(ctx, "my-app", 0)
	if err != nil {
		fmt.Println("no point answered:", err)
	}
	for _, r := range regs {
		fmt.Println(r.Peer.ID, r.Peer.Addrs)
	}
}
