// Package store defines where a rendezvous point keeps its registrations: the
// Store interface that every backend implements, with the errors it returns.
//
// A backend orders registrations by a sequence number that it assigns and
// that only grows, across restarts of a durable backend and across the points
// that share one. Cookies are positions in that sequence, so a backend that
// keeps its sequence keeps cookies valid. The conformance suite in
// store/storetest defines the behaviour every backend must have.
//
// A backend enforces every limit of Limits atomically with the write it
// bounds, per-source quotas included, so that they hold exactly however
// many points share it: each registration keeps the address it came from
// (Registration.Source), and a new one is counted against the live
// registrations of that address and of its network (SourcePrefixes).
package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
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
	// Source is the IP address the registration came from, which the
	// per-source quotas of Limits count by; the zero Addr counts in none.
	// Register stores it with the registration (a refresh replaces it);
	// Discover leaves it zero.
	Source netip.Addr
}

// Limits bound what Register may add. A zero field is no bound.
type Limits struct {
	// MaxRegistrationsPerPeer bounds the live (peer, namespace) pairs of a peer.
	MaxRegistrationsPerPeer int
	// MaxRegistrations bounds the live registrations in the store.
	MaxRegistrations int
	// MaxNamespaces bounds the namespaces holding live registrations.
	MaxNamespaces int

	// Per-source quotas: each bounds the live registrations whose Source
	// lies in one prefix (see SourcePrefixes).
	//
	// MaxPerIPv4Address bounds those of one IPv4 address (/32).
	MaxPerIPv4Address int
	// MaxPerIPv4Net bounds those of one IPv4 /24.
	MaxPerIPv4Net int
	// MaxPerIPv6Subnet bounds those of one IPv6 /64.
	MaxPerIPv6Subnet int
	// MaxPerIPv6Net bounds those of one IPv6 /48.
	MaxPerIPv6Net int

	// CrowdedRegistrations and CrowdedNamespaces are the fill at which the
	// store is crowded: while it holds at least CrowdedRegistrations live
	// registrations, a new one is refused with ErrCrowded if the network
	// of its source (IPv4 /24, IPv6 /48) holds CrowdedShare live
	// registrations or more; while it holds at least CrowdedNamespaces
	// namespaces, so is such a one that would open a new namespace. A
	// zero field is no bound; CrowdedShare 0 disables both. A store
	// checks, in order: the per-peer limit, the per-source quotas,
	// MaxRegistrations and MaxNamespaces, then crowding.
	CrowdedRegistrations int
	CrowdedNamespaces    int
	CrowdedShare         int
}

// Prefix lengths of the per-source quotas: a source's address (an IPv6
// /64 is one host or one network behind one gateway) and its network.
const (
	IPv4AddressBits = 32
	IPv4NetBits     = 24
	IPv6SubnetBits  = 64
	IPv6NetBits     = 48
)

// SourcePrefixes returns the two prefixes of src that the per-source quotas
// count by: its address and its network (IPv4 /32 and /24, IPv6 /64 and
// /48). An IPv4-mapped IPv6 address counts as the IPv4 address. ok is false
// for the zero Addr, which counts in no quota.
func SourcePrefixes(src netip.Addr) (addr, network netip.Prefix, ok bool) {
	if !src.IsValid() {
		return netip.Prefix{}, netip.Prefix{}, false
	}
	src = src.Unmap().WithZone("")
	if src.Is4() {
		addr, _ = src.Prefix(IPv4AddressBits)
		network, _ = src.Prefix(IPv4NetBits)
	} else {
		addr, _ = src.Prefix(IPv6SubnetBits)
		network, _ = src.Prefix(IPv6NetBits)
	}
	return addr, network, true
}

// quotaOf returns the quota of limits that counts by prefixes of p's
// length and family, or 0.
func (l Limits) quotaOf(p netip.Prefix) int {
	switch {
	case p.Addr().Is4() && p.Bits() == IPv4AddressBits:
		return l.MaxPerIPv4Address
	case p.Addr().Is4() && p.Bits() == IPv4NetBits:
		return l.MaxPerIPv4Net
	case p.Addr().Is6() && p.Bits() == IPv6SubnetBits:
		return l.MaxPerIPv6Subnet
	case p.Addr().Is6() && p.Bits() == IPv6NetBits:
		return l.MaxPerIPv6Net
	}
	return 0
}

// CheckQuota applies the per-source quotas to a new registration from src,
// given the live registrations its address and its network hold. It
// returns nil or a *QuotaError.
func (l Limits) CheckQuota(src netip.Addr, inAddr, inNet int) error {
	addr, network, ok := SourcePrefixes(src)
	if !ok {
		return nil
	}
	if m := l.quotaOf(addr); m > 0 && inAddr >= m {
		return &QuotaError{Bits: addr.Bits(), IPv6: addr.Addr().Is6(), Max: m}
	}
	if m := l.quotaOf(network); m > 0 && inNet >= m {
		return &QuotaError{Bits: network.Bits(), IPv6: network.Addr().Is6(), Max: m}
	}
	return nil
}

// MayCrowd reports whether a new registration whose source's network holds
// inNet live registrations is refused if the store is crowded: whether a
// backend needs exact counts of what it holds to decide.
func (l Limits) MayCrowd(src netip.Addr, inNet int) bool {
	return src.IsValid() && l.CrowdedShare > 0 && inNet >= l.CrowdedShare &&
		(l.CrowdedRegistrations > 0 || l.CrowdedNamespaces > 0)
}

// Crowded reports whether a store holding st is crowded for a new
// registration, which would open a new namespace if newNamespace.
func (l Limits) Crowded(st Stats, newNamespace bool) bool {
	return (l.CrowdedRegistrations > 0 && st.Registrations >= l.CrowdedRegistrations) ||
		(newNamespace && l.CrowdedNamespaces > 0 && st.Namespaces >= l.CrowdedNamespaces)
}

// CountsSources reports whether any per-source quota or the crowding rule
// applies: whether a backend must count the registrations of a source.
func (l Limits) CountsSources() bool {
	return l.MaxPerIPv4Address > 0 || l.MaxPerIPv4Net > 0 || l.MaxPerIPv6Subnet > 0 ||
		l.MaxPerIPv6Net > 0 || l.CrowdedShare > 0
}

// QuotaError is a refusal on a per-source quota: the prefix of the source
// already holds Max live registrations. It matches ErrQuota under
// errors.Is.
type QuotaError struct {
	// Bits is the prefix length of the quota: 32 or 24 for IPv4, 64 or 48
	// for IPv6.
	Bits int
	// IPv6 tells the family.
	IPv6 bool
	// Max is the quota.
	Max int
}

func (e *QuotaError) Error() string {
	family := "IPv4"
	if e.IPv6 {
		family = "IPv6"
	}
	return fmt.Sprintf("quota: %d live registrations per %s /%d reached", e.Max, family, e.Bits)
}

// Is makes a *QuotaError match ErrQuota.
func (e *QuotaError) Is(target error) bool { return target == ErrQuota }

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
	// ErrQuota: the source's address or network already holds its quota
	// of live registrations; the error is a *QuotaError saying which.
	ErrQuota = errors.New("source quota reached")
	// ErrCrowded: the store is crowded and the source's network holds its
	// share already (Limits.CrowdedShare).
	ErrCrowded = errors.New("store crowded and source holds its share")
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
	// existing live registration never fails on a limit, per-source quotas
	// and crowding included, whatever its new Source. Once Register
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
