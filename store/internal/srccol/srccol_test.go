package srccol

import (
	"net/netip"
	"slices"
	"testing"
)

func TestColumns(t *testing.T) {
	for _, tc := range []struct {
		src                   string
		addr, prefix, network []byte
	}{
		{"192.0.2.7", []byte{192, 0, 2, 7}, []byte{192, 0, 2, 7}, []byte{192, 0, 2, 0}},
		{"::ffff:192.0.2.7", []byte{192, 0, 2, 7}, []byte{192, 0, 2, 7}, []byte{192, 0, 2, 0}},
		{"2001:db8:1:2:3:4:5:6", netip.MustParseAddr("2001:db8:1:2:3:4:5:6").AsSlice(),
			netip.MustParseAddr("2001:db8:1:2::").AsSlice(), netip.MustParseAddr("2001:db8:1::").AsSlice()},
	} {
		a, p, n := Columns(netip.MustParseAddr(tc.src))
		if !slices.Equal(a, tc.addr) || !slices.Equal(p, tc.prefix) || !slices.Equal(n, tc.network) {
			t.Errorf("Columns(%s) = %v %v %v, want %v %v %v", tc.src, a, p, n, tc.addr, tc.prefix, tc.network)
		}
	}
	if a, p, n := Columns(netip.Addr{}); a != nil || p != nil || n != nil {
		t.Errorf("Columns of no source = %v %v %v, want nil", a, p, n)
	}
}
