// Package srccol holds how the database-backed stores keep a
// registration's source: the columns the per-source quotas count by.
package srccol

import (
	"net/netip"

	"github.com/rendezvous-p2p/rendezvous/store"
)

// Columns are the values of the src, src_addr and src_net columns of a
// registration from src: the address, and its address and network prefixes
// (see store.SourcePrefixes), 4 or 16 bytes each; all nil when there is no
// source.
func Columns(src netip.Addr) (addr, prefix, network []byte) {
	a, n, ok := store.SourcePrefixes(src)
	if !ok {
		return nil, nil, nil
	}
	return src.Unmap().WithZone("").AsSlice(), a.Addr().AsSlice(), n.Addr().AsSlice()
}
