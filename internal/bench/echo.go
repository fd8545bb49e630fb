// Package bench is the load generator of `rendezvous bench`, and the echo
// protocol it measures the transport's own ceiling with.
package bench

import (
	"errors"
	"io"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"

	"github.com/rendezvous-p2p/rendezvous/pb"
)

// EchoProtocolID is a protocol that answers each varint-delimited message
// with the same message, framed the same way as rendezvous requests: the
// least work a request/response protocol can do on the same stack.
const EchoProtocolID protocol.ID = "/rendezvous-bench/echo/1.0.0"

// maxEchoSize bounds an echoed message.
const maxEchoSize = 64 << 10

// MountEcho serves EchoProtocolID on h.
func MountEcho(h host.Host) {
	h.SetStreamHandler(EchoProtocolID, handleEcho)
}

func handleEcho(s network.Stream) {
	rd := pbio.NewDelimitedReader(s, maxEchoSize)
	wr := pbio.NewDelimitedWriter(s)
	for {
		var m pb.Message
		if err := rd.ReadMsg(&m); err != nil {
			if errors.Is(err, io.EOF) {
				_ = s.Close()
			} else {
				_ = s.Reset()
			}
			return
		}
		if err := wr.WriteMsg(&m); err != nil {
			_ = s.Reset()
			return
		}
	}
}
