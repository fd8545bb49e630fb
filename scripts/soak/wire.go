package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-msgio"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// The abusers speak to the point over raw go-libp2p connections
// (internal/rawconn) so that they control every byte of a stream,
// multistream negotiation included.

// multistreamID is the header of multistream-select.
const multistreamID = "/multistream/1.0.0"

// negotiate agrees on protocol id over s with multistream-select, as the
// dialer: the header and the protocol, then the point's echo of both.
func negotiate(s io.ReadWriter, id string) error {
	w := msgio.NewVarintWriter(s)
	for _, m := range []string{multistreamID, id} {
		if err := w.WriteMsg([]byte(m + "\n")); err != nil {
			return err
		}
	}
	r := msgio.NewVarintReaderSize(s, 1024)
	for _, want := range []string{multistreamID, id} {
		b, err := r.ReadMsg()
		if err != nil {
			return err
		}
		got := string(b)
		r.ReleaseMsg(b)
		if got != want+"\n" {
			return fmt.Errorf("negotiating %s: point answered %q", id, got)
		}
	}
	return nil
}

// openRendezvous opens a stream on c and negotiates the rendezvous protocol
// on it, within 20 s.
func openRendezvous(ctx context.Context, c transport.CapableConn) (network.MuxedStream, error) {
	s, err := c.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	_ = s.SetDeadline(time.Now().Add(20 * time.Second))
	if err := negotiate(s, string(rendezvous.ProtocolID)); err != nil {
		_ = s.Reset()
		return nil, err
	}
	_ = s.SetDeadline(time.Time{})
	return s, nil
}

// roundTrip sends req on s and reads the answer, within 20 s.
func roundTrip(s network.MuxedStream, req *pb.Message) (*pb.Message, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	_ = s.SetDeadline(time.Now().Add(20 * time.Second))
	defer func() { _ = s.SetDeadline(time.Time{}) }()
	if err := msgio.NewVarintWriter(s).WriteMsg(b); err != nil {
		return nil, err
	}
	r := msgio.NewVarintReaderSize(s, 1<<20)
	buf, err := r.ReadMsg()
	if err != nil {
		return nil, err
	}
	defer r.ReleaseMsg(buf)
	var resp pb.Message
	if err := proto.Unmarshal(buf, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// registerMsg is a REGISTER in ns of the peer whose signed record is rec.
func registerMsg(ns string, rec []byte, ttl time.Duration) *pb.Message {
	return &pb.Message{
		Type: pb.Message_REGISTER.Enum(),
		Register: &pb.Message_Register{
			Ns:               proto.String(ns),
			SignedPeerRecord: rec,
			Ttl:              proto.Uint64(uint64(ttl / time.Second)),
		},
	}
}

// discoverMsg is a DISCOVER of at most limit registrations in ns.
func discoverMsg(ns string, limit int) *pb.Message {
	return &pb.Message{
		Type:     pb.Message_DISCOVER.Enum(),
		Discover: &pb.Message_Discover{Ns: proto.String(ns), Limit: proto.Uint64(uint64(limit))},
	}
}

// outcome names what a request came to: the status of its answer (with
// the text of a refusal, which names the limit), or how its stream ended.
func outcome(resp *pb.Message, err error) string {
	if err != nil {
		return ended(err)
	}
	var status rendezvous.Status
	var text string
	switch resp.GetType() {
	case pb.Message_REGISTER_RESPONSE:
		status, text = resp.GetRegisterResponse().GetStatus(), resp.GetRegisterResponse().GetStatusText()
	case pb.Message_DISCOVER_RESPONSE:
		status, text = resp.GetDiscoverResponse().GetStatus(), resp.GetDiscoverResponse().GetStatusText()
	default:
		return "answered " + resp.GetType().String()
	}
	if status == rendezvous.StatusOK || text == "" {
		return status.String()
	}
	return status.String() + " (" + text + ")"
}

// ended names how a stream ended, from the error that ended it (nil: the
// point closed it).
func ended(err error) string {
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by the point"
	case errors.Is(err, network.ErrReset):
		return "reset"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, net.ErrClosed), strings.Contains(err.Error(), "session shutdown"):
		return "connection closed"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return "failed: " + s
}

// sleep waits d or until ctx is done, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dialTimeout bounds opening one abuser's connection.
const dialTimeout = 20 * time.Second
