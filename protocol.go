package rendezvous

import "github.com/libp2p/go-libp2p/core/protocol"

const (
	// ProtocolID is the protocol ID of Rendezvous in the libp2p specification.
	ProtocolID protocol.ID = "/rendezvous/1.0.0"

	// CanvasProtocolID is the protocol ID that the JavaScript implementation
	// (@canvas-js/libp2p-rendezvous) uses by default. The wire format is the same.
	CanvasProtocolID protocol.ID = "/canvas/rendezvous/1.0.0"

	// ServiceName is the resource-manager service name of a rendezvous point.
	ServiceName = "libp2p.rendezvous"
)
