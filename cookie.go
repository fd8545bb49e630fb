package rendezvous

import (
	"encoding/binary"
	"unicode/utf8"
)

// Cookie is the position of a DISCOVER in the sequence of registrations of a
// namespace: the next DISCOVER with it returns only registrations made (or
// refreshed) after Seq.
//
// On the wire it is 8 bytes of Seq, big-endian, followed by the UTF-8
// namespace (nothing for every namespace). rust-libp2p clients parse cookies
// in exactly this layout.
type Cookie struct {
	// Seq is the registration sequence number the cookie continues after.
	Seq uint64
	// Namespace is the namespace the cookie was issued for; empty for every
	// namespace.
	Namespace string
}

// cookieSeqLen is the length of the sequence prefix of an encoded cookie.
const cookieSeqLen = 8

// Encode returns the wire form of c.
func (c Cookie) Encode() []byte {
	return c.Append(make([]byte, 0, c.EncodedLen()))
}

// Append appends the bytes of Encode to b.
func (c Cookie) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, c.Seq)
	return append(b, c.Namespace...)
}

// EncodedLen is the length of Encode's bytes.
func (c Cookie) EncodedLen() int {
	return cookieSeqLen + len(c.Namespace)
}

// DecodeCookie parses a cookie received in a DISCOVER for namespace ns. An
// empty cookie is the start of the sequence. A cookie that is malformed or
// was issued for another namespace is refused with StatusInvalidCookie.
func DecodeCookie(b []byte, ns string) (Cookie, error) {
	if len(b) == 0 {
		return Cookie{Namespace: ns}, nil
	}
	if len(b) < cookieSeqLen {
		return Cookie{}, Errorf(StatusInvalidCookie, "cookie is %d bytes, shorter than %d", len(b), cookieSeqLen)
	}
	rest := b[cookieSeqLen:]
	if !utf8.Valid(rest) {
		return Cookie{}, Errorf(StatusInvalidCookie, "cookie namespace is not valid UTF-8")
	}
	if string(rest) != ns {
		return Cookie{}, Errorf(StatusInvalidCookie, "cookie was issued for another namespace")
	}
	return Cookie{Seq: binary.BigEndian.Uint64(b), Namespace: ns}, nil
}
