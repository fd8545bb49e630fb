package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// RegisterAt registers the host in ns at one point, for ttl (0 for the
// client's default), and returns the TTL the point granted. It is one
// REGISTER on a stream of its own; it does not keep the registration alive.
func (c *Client) RegisterAt(ctx context.Context, point peer.ID, ns string, ttl time.Duration) (time.Duration, error) {
	req, _, err := c.registerRequest(ns, ttl)
	if err != nil {
		return 0, err
	}
	return c.registerAt(ctx, point, req)
}

// registerAt sends a REGISTER built by registerRequest to one point. A
// point known to want the legacy envelope (rust-libp2p's) gets the record
// in it; a point that drops the REGISTER without an answer is asked once
// more with the legacy envelope, and remembered if that is granted.
func (c *Client) registerAt(ctx context.Context, point peer.ID, req *pb.Message) (time.Duration, error) {
	legacy := c.legacyTwin(req)
	if legacy != nil && c.wantsLegacy(point) {
		return c.registerOnce(ctx, point, legacy)
	}
	granted, err := c.registerOnce(ctx, point, req)
	if legacy == nil || !errors.Is(err, errNoAnswer) {
		return granted, err
	}
	granted, lerr := c.registerOnce(ctx, point, legacy)
	if lerr != nil {
		return 0, err
	}
	c.mu.Lock()
	c.legacyPoints[point] = true
	c.mu.Unlock()
	return granted, nil
}

// wantsLegacy reports whether point granted a REGISTER only in the legacy
// envelope.
func (c *Client) wantsLegacy(point peer.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.legacyPoints[point]
}

// registerOnce sends one REGISTER to one point and returns the TTL granted.
func (c *Client) registerOnce(ctx context.Context, point peer.ID, req *pb.Message) (time.Duration, error) {
	resp, err := c.roundTrip(ctx, point, req)
	if err != nil {
		return 0, err
	}
	r := resp.GetRegisterResponse()
	if resp.GetType() != pb.Message_REGISTER_RESPONSE || r == nil {
		return 0, fmt.Errorf("rendezvous point %s answered a %s to a REGISTER", point, resp.GetType())
	}
	if r.GetStatus() != rendezvous.StatusOK {
		return 0, &rendezvous.Error{Status: r.GetStatus(), Text: r.GetStatusText()}
	}
	granted := time.Duration(r.GetTtl()) * time.Second
	if r.Ttl == nil || granted == 0 {
		// A point that does not say grants what was asked.
		granted = time.Duration(req.GetRegister().GetTtl()) * time.Second
	}
	return granted, nil
}

// UnregisterAt removes the host's registration in ns at one point. The
// protocol has no answer: it returns once the point has read the request
// and closed (or reset) the stream, or at the deadline.
func (c *Client) UnregisterAt(ctx context.Context, point peer.ID, ns string) error {
	if err := rendezvous.ValidateNamespace(ns); err != nil {
		return err
	}
	return c.unregisterAt(ctx, point, ns)
}

func (c *Client) unregisterAt(ctx context.Context, point peer.ID, ns string) error {
	req := &pb.Message{
		Type:       pb.Message_UNREGISTER.Enum(),
		Unregister: &pb.Message_Unregister{Ns: proto.String(ns)},
	}
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	s, err := c.openStream(ctx, point)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := pbio.NewDelimitedWriter(s).WriteMsg(req); err != nil {
		_ = s.Reset()
		return fmt.Errorf("rendezvous point %s: sending UNREGISTER: %w", point, err)
	}
	// UNREGISTER has no answer, so nothing is lost when the point closes or
	// resets the stream on seeing the end of it. Wait for that, so the
	// request is not cut off.
	_ = s.CloseWrite()
	_, _ = io.Copy(io.Discard, io.LimitReader(s, int64(c.maxResponseSize)))
	return nil
}

// DiscoverAt asks one point for at most limit registrations in ns (every
// namespace if empty; 0 for DefaultDiscoverLimit), continuing after cookie.
// It returns the registrations and the cookie to continue with. It is one
// DISCOVER on a stream of its own, with no paging, caching or
// de-duplication; see Discover for those.
//
// Every namespace is asked for with no `ns` field at all, never an empty
// one: a nim-libp2p 1.7 point exits on an empty namespace. Such a point
// closes the stream unanswered instead, and the error then says that the
// point may not list every namespace.
func (c *Client) DiscoverAt(ctx context.Context, point peer.ID, ns string, limit int, cookie []byte) ([]Registration, []byte, error) {
	if err := checkDiscover(ns, limit); err != nil {
		return nil, nil, err
	}
	return c.discoverAt(ctx, point, ns, limit, cookie)
}

// checkDiscover refuses a DISCOVER that no point could answer.
func checkDiscover(ns string, limit int) error {
	if err := rendezvous.ValidateDiscoverNamespace(ns); err != nil {
		return err
	}
	if limit < 0 {
		return fmt.Errorf("rendezvous client: negative limit %d", limit)
	}
	return nil
}

// discoverAt sends one DISCOVER to point and returns the registrations of
// the answer whose records verify (see openRegistrations: the signatures of
// a page are checked on every core) and the cookie to continue with.
func (c *Client) discoverAt(ctx context.Context, point peer.ID, ns string, limit int, cookie []byte) ([]Registration, []byte, error) {
	r, err := c.fetchDiscover(ctx, point, ns, limit, cookie)
	if err != nil {
		return nil, nil, err
	}
	return openRegistrations(point, ns, r.GetRegistrations(), 0), r.GetCookie(), nil
}

// fetchDiscover sends one DISCOVER to point and returns its OK answer, the
// records not yet verified.
func (c *Client) fetchDiscover(ctx context.Context, point peer.ID, ns string, limit int, cookie []byte) (*pb.Message_DiscoverResponse, error) {
	resp, err := c.roundTrip(ctx, point, discoverRequest(ns, limit, cookie))
	if err != nil {
		if ns == "" && errors.Is(err, errNoAnswer) {
			return nil, fmt.Errorf("%w (a point that cannot list every namespace, such as nim-libp2p before 1.15, does this: ask for one namespace)", err)
		}
		return nil, err
	}
	r := resp.GetDiscoverResponse()
	if resp.GetType() != pb.Message_DISCOVER_RESPONSE || r == nil {
		return nil, fmt.Errorf("rendezvous point %s answered a %s to a DISCOVER", point, resp.GetType())
	}
	if r.GetStatus() != rendezvous.StatusOK {
		return nil, &rendezvous.Error{Status: r.GetStatus(), Text: r.GetStatusText()}
	}
	return r, nil
}

// discoverRequest builds a DISCOVER as every implementation reads it: no
// `ns` for every namespace (an empty one takes a nim-libp2p 1.7 point down),
// an explicit nonzero `limit` (nim-libp2p returns nothing for 0), and no
// `cookie` field when there is no cookie (nim-libp2p and the Waku point
// refuse an empty one as invalid).
func discoverRequest(ns string, limit int, cookie []byte) *pb.Message {
	if limit <= 0 {
		limit = DefaultDiscoverLimit
	}
	d := &pb.Message_Discover{Limit: proto.Uint64(uint64(limit))}
	if ns != "" {
		d.Ns = proto.String(ns)
	}
	if len(cookie) > 0 {
		d.Cookie = append([]byte(nil), cookie...)
	}
	return &pb.Message{Type: pb.Message_DISCOVER.Enum(), Discover: d}
}

func (c *Client) openStream(ctx context.Context, point peer.ID) (network.Stream, error) {
	s, err := c.host.NewStream(ctx, point, c.protocol)
	if err != nil {
		return nil, fmt.Errorf("rendezvous point %s: %w", point, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	return s, nil
}

// errNoAnswer marks a request that the point closed or reset the stream on
// without answering.
var errNoAnswer = errors.New("closed the stream without answering")

// errResponseTooLarge marks an answer longer than the client reads.
var errResponseTooLarge = errors.New("answer larger than the client reads")

// roundTrip sends req to point on a stream of its own and reads the answer.
// It does not close its side of the stream before the answer is read: a
// point that resets a stream once it sees its end (the Waku one) would
// throw the answer away. An answer read counts whatever happens to the
// stream after it.
func (c *Client) roundTrip(ctx context.Context, point peer.ID, req *pb.Message) (*pb.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	s, err := c.openStream(ctx, point)
	if err != nil {
		return nil, err
	}
	if err := pbio.NewDelimitedWriter(s).WriteMsg(req); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("rendezvous point %s: sending %s: %w", point, req.GetType(), err)
	}
	var resp pb.Message
	if err := pbio.NewDelimitedReader(s, c.maxResponseSize).ReadMsg(&resp); err != nil {
		_ = s.Reset()
		if errors.Is(err, io.EOF) || errors.Is(err, network.ErrReset) {
			return nil, fmt.Errorf("rendezvous point %s %w %s: %w", point, errNoAnswer, req.GetType(), err)
		}
		if errors.Is(err, io.ErrShortBuffer) { // what pbio says of a message over its cap
			return nil, fmt.Errorf("rendezvous point %s: %w (%d bytes) to %s", point, errResponseTooLarge, c.maxResponseSize, req.GetType())
		}
		return nil, fmt.Errorf("rendezvous point %s: reading the answer to %s: %w", point, req.GetType(), err)
	}
	_ = s.Close()
	return &resp, nil
}
