// Package store defines where a rendezvous point keeps its registrations: the
// Store interface that every backend implements, with the errors it returns.
//
// A backend orders registrations by a sequence number that it assigns and
// that only grows, across restarts of a durable backend and across the points
// that share one. Cookies are positions in that sequence, so a backend that
// keeps its sequence keeps cookies valid. The conformance suite in
// store/storetest defines the behaviour every backend must have.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Registration is one peer's registration in one namespace.
type Registration struct {
	// Namespace is the namespace registered in; never empty.
	Namespace string
	// Peer is the registered peer.
	Peer peer.ID
	// Record is the signed envelope holding the peer's record, as received.
	Record []byte
	// Expires is when the registration stops being served.
	Expires time.Time
	// Seq is the sequence number the store assigned when the registration was
	// made or last refreshed. Ignored by Register.
	Seq uint64
}

// Limits bound what Register may add. A zero field is no bound.
type Limits struct {
	// MaxRegistrationsPerPeer bounds the live (peer, namespace) pairs of a peer.
	MaxRegistrationsPerPeer int
	// MaxRegistrations bounds the live registrations in the store.
	MaxRegistrations int
	// MaxNamespaces bounds the namespaces holding live registrations.
	MaxNamespaces int
}

// Stats counts what a store holds.
type Stats struct {
	// Registrations is the number of live registrations.
	Registrations int
	// Namespaces is the number of namespaces with live registrations.
	Namespaces int
}

// Errors that a Store returns; a backend may wrap them.
var (
	// ErrPeerLimit: the peer already has Limits.MaxRegistrationsPerPeer
	// live registrations in other namespaces.
	ErrPeerLimit = errors.New("too many registrations for this peer")
	// ErrFull: the store holds Limits.MaxRegistrations registrations, or
	// Limits.MaxNamespaces namespaces and this one would be new.
	ErrFull = errors.New("registration capacity reached")
	// ErrUnavailable: the backend cannot be reached now; the request may
	// succeed later.
	ErrUnavailable = errors.New("store unavailable")
)

// Store keeps registrations. Its methods are safe for concurrent use.
//
// A registration whose Expires is not after now is expired: it is never
// returned, never counted against a limit, and eventually removed.
type Store interface {
	// Register adds the registration of (reg.Peer, reg.Namespace), or
	// replaces the existing one, and returns its sequence number: greater
	// than every sequence number the store returned before. Replacing an
	// existing live registration never fails on a limit. Once Register
	// returns, the registration is as durable as the backend promises.
	Register(ctx context.Context, reg Registration, limits Limits, now time.Time) (uint64, error)

	// Unregister removes the registration of (p, ns), if there is one.
	Unregister(ctx context.Context, ns string, p peer.ID) error

	// Discover appends to dst at most limit live registrations with a
	// sequence number greater than after, in increasing sequence order, from
	// namespace ns, or from every namespace if ns is empty, and returns the
	// extended slice; on error it returns dst as it was. A registration
	// acknowledged by Register before Discover began is never passed over:
	// it is returned, or sequenced after the last one returned.
	//
	// Appending lets a caller reuse one buffer for every page it serves.
	// The Record of a returned registration must not be modified.
	Discover(ctx context.Context, dst []Registration, ns string, after uint64, limit int, now time.Time) ([]Registration, error)

	// Stats counts the live registrations and namespaces.
	Stats(ctx context.Context, now time.Time) (Stats, error)

	// Close releases the store. Calls after Close fail.
	Close() error
}
