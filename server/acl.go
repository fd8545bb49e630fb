package server

import "github.com/libp2p/go-libp2p/core/peer"

// ACLFilter decides which peers may register and discover in which
// namespaces. A refused request is answered E_NOT_AUTHORIZED. Without one,
// every peer may do everything.
type ACLFilter interface {
	// AllowRegister reports whether p may register in ns.
	AllowRegister(p peer.ID, ns string) bool
	// AllowDiscover reports whether p may discover in ns ("" is every
	// namespace).
	AllowDiscover(p peer.ID, ns string) bool
}
