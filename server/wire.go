package server

import (
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// The point writes its responses in protobuf's wire format field by field,
// which gives the bytes proto.Marshal gives (fields in the order of their
// numbers, proto2 presence) without its generic machinery, straight into a
// buffer the stream is written from. Unknown fields are not written: a
// response is built by the point and has none.

// Field numbers of rendezvous.proto.
const (
	fieldMessageType             protowire.Number = 1
	fieldMessageRegister         protowire.Number = 2
	fieldMessageRegisterResponse protowire.Number = 3
	fieldMessageUnregister       protowire.Number = 4
	fieldMessageDiscover         protowire.Number = 5
	fieldMessageDiscoverResponse protowire.Number = 6

	fieldRegisterNs     protowire.Number = 1
	fieldRegisterRecord protowire.Number = 2
	fieldRegisterTTL    protowire.Number = 3

	fieldRegisterResponseStatus protowire.Number = 1
	fieldRegisterResponseText   protowire.Number = 2
	fieldRegisterResponseTTL    protowire.Number = 3

	fieldUnregisterNs protowire.Number = 1

	fieldDiscoverNs     protowire.Number = 1
	fieldDiscoverLimit  protowire.Number = 2
	fieldDiscoverCookie protowire.Number = 3

	fieldDiscoverResponseRegistrations protowire.Number = 1
	fieldDiscoverResponseCookie        protowire.Number = 2
	fieldDiscoverResponseStatus        protowire.Number = 3
	fieldDiscoverResponseText          protowire.Number = 4
)

// appendDelimited appends m to b as the point writes it on a stream: its
// length as a varint, then the message.
func appendDelimited(b []byte, m *pb.Message) []byte {
	b = protowire.AppendVarint(b, uint64(sizeMessage(m)))
	return appendMessage(b, m)
}

// Optional fields: a nil pointer (or nil bytes) is absent, anything else is
// written, zero values too.

func sizeString(n protowire.Number, v *string) int {
	if v == nil {
		return 0
	}
	return protowire.SizeTag(n) + protowire.SizeBytes(len(*v))
}

func appendString(b []byte, n protowire.Number, v *string) []byte {
	if v == nil {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendString(b, *v)
}

func sizeBytes(n protowire.Number, v []byte) int {
	if v == nil {
		return 0
	}
	return protowire.SizeTag(n) + protowire.SizeBytes(len(v))
}

func appendBytes(b []byte, n protowire.Number, v []byte) []byte {
	if v == nil {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func sizeUint64(n protowire.Number, v *uint64) int {
	if v == nil {
		return 0
	}
	return protowire.SizeTag(n) + protowire.SizeVarint(*v)
}

func appendUint64(b []byte, n protowire.Number, v *uint64) []byte {
	if v == nil {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, *v)
}

// enum is what a protobuf enum is written as: an int32, sign-extended.
type enum interface {
	~int32
}

func sizeEnum[E enum](n protowire.Number, v *E) int {
	if v == nil {
		return 0
	}
	return protowire.SizeTag(n) + protowire.SizeVarint(uint64(int64(*v)))
}

func appendEnum[E enum](b []byte, n protowire.Number, v *E) []byte {
	if v == nil {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(int64(*v)))
}

// sizeSub is the size of a sub-message field whose message is size bytes.
func sizeSub(n protowire.Number, size int) int {
	return protowire.SizeTag(n) + protowire.SizeBytes(size)
}

// appendSubHeader appends the tag and length of a sub-message field.
func appendSubHeader(b []byte, n protowire.Number, size int) []byte {
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(size))
}

func sizeMessage(m *pb.Message) int {
	n := sizeEnum(fieldMessageType, m.Type)
	if m.Register != nil {
		n += sizeSub(fieldMessageRegister, sizeRegister(m.Register))
	}
	if m.RegisterResponse != nil {
		n += sizeSub(fieldMessageRegisterResponse, sizeRegisterResponse(m.RegisterResponse))
	}
	if m.Unregister != nil {
		n += sizeSub(fieldMessageUnregister, sizeUnregister(m.Unregister))
	}
	if m.Discover != nil {
		n += sizeSub(fieldMessageDiscover, sizeDiscover(m.Discover))
	}
	if m.DiscoverResponse != nil {
		n += sizeSub(fieldMessageDiscoverResponse, sizeDiscoverResponse(m.DiscoverResponse))
	}
	return n
}

func appendMessage(b []byte, m *pb.Message) []byte {
	b = appendEnum(b, fieldMessageType, m.Type)
	if r := m.Register; r != nil {
		b = appendSubHeader(b, fieldMessageRegister, sizeRegister(r))
		b = appendRegister(b, r)
	}
	if r := m.RegisterResponse; r != nil {
		b = appendSubHeader(b, fieldMessageRegisterResponse, sizeRegisterResponse(r))
		b = appendRegisterResponse(b, r)
	}
	if u := m.Unregister; u != nil {
		b = appendSubHeader(b, fieldMessageUnregister, sizeUnregister(u))
		b = appendString(b, fieldUnregisterNs, u.Ns)
	}
	if d := m.Discover; d != nil {
		b = appendSubHeader(b, fieldMessageDiscover, sizeDiscover(d))
		b = appendString(b, fieldDiscoverNs, d.Ns)
		b = appendUint64(b, fieldDiscoverLimit, d.Limit)
		b = appendBytes(b, fieldDiscoverCookie, d.Cookie)
	}
	if d := m.DiscoverResponse; d != nil {
		b = appendSubHeader(b, fieldMessageDiscoverResponse, sizeDiscoverResponse(d))
		b = appendDiscoverResponse(b, d)
	}
	return b
}

// sizeRegister is the size of r, a registration of a DISCOVER response or
// a REGISTER.
func sizeRegister(r *pb.Message_Register) int {
	if r == nil {
		return 0
	}
	return sizeString(fieldRegisterNs, r.Ns) + sizeBytes(fieldRegisterRecord, r.SignedPeerRecord) + sizeUint64(fieldRegisterTTL, r.Ttl)
}

func appendRegister(b []byte, r *pb.Message_Register) []byte {
	if r == nil {
		return b
	}
	b = appendString(b, fieldRegisterNs, r.Ns)
	b = appendBytes(b, fieldRegisterRecord, r.SignedPeerRecord)
	return appendUint64(b, fieldRegisterTTL, r.Ttl)
}

func sizeRegisterResponse(r *pb.Message_RegisterResponse) int {
	return sizeEnum(fieldRegisterResponseStatus, r.Status) + sizeString(fieldRegisterResponseText, r.StatusText) + sizeUint64(fieldRegisterResponseTTL, r.Ttl)
}

func appendRegisterResponse(b []byte, r *pb.Message_RegisterResponse) []byte {
	b = appendEnum(b, fieldRegisterResponseStatus, r.Status)
	b = appendString(b, fieldRegisterResponseText, r.StatusText)
	return appendUint64(b, fieldRegisterResponseTTL, r.Ttl)
}

func sizeUnregister(u *pb.Message_Unregister) int {
	return sizeString(fieldUnregisterNs, u.Ns)
}

func sizeDiscover(d *pb.Message_Discover) int {
	return sizeString(fieldDiscoverNs, d.Ns) + sizeUint64(fieldDiscoverLimit, d.Limit) + sizeBytes(fieldDiscoverCookie, d.Cookie)
}

// sizeRegistration is what one registration adds to a DISCOVER response.
func sizeRegistration(r *pb.Message_Register) int {
	return sizeSub(fieldDiscoverResponseRegistrations, sizeRegister(r))
}

func sizeDiscoverResponse(d *pb.Message_DiscoverResponse) int {
	n := 0
	for _, r := range d.Registrations {
		n += sizeRegistration(r)
	}
	return n + sizeBytes(fieldDiscoverResponseCookie, d.Cookie) + sizeEnum(fieldDiscoverResponseStatus, d.Status) + sizeString(fieldDiscoverResponseText, d.StatusText)
}

func appendDiscoverResponse(b []byte, d *pb.Message_DiscoverResponse) []byte {
	for _, r := range d.Registrations {
		b = appendSubHeader(b, fieldDiscoverResponseRegistrations, sizeRegister(r))
		b = appendRegister(b, r)
	}
	b = appendBytes(b, fieldDiscoverResponseCookie, d.Cookie)
	b = appendEnum(b, fieldDiscoverResponseStatus, d.Status)
	return appendString(b, fieldDiscoverResponseText, d.StatusText)
}

// registrationSize is what a registration of namespace ns, record and ttl
// adds to a DISCOVER response, as sizeRegistration gives it for its
// message.
func registrationSize(ns string, record []byte, ttl uint64) int {
	n := protowire.SizeTag(fieldRegisterNs) + protowire.SizeBytes(len(ns)) + protowire.SizeTag(fieldRegisterTTL) + protowire.SizeVarint(ttl)
	if record != nil {
		n += protowire.SizeTag(fieldRegisterRecord) + protowire.SizeBytes(len(record))
	}
	return sizeSub(fieldDiscoverResponseRegistrations, n)
}

// appendDiscoverPage appends the DISCOVER_RESPONSE of p, with its length
// prefix, to b: the bytes of appendDelimited for the message
// handleDiscover builds of p.
func appendDiscoverPage(b []byte, p discoverPage) []byte {
	cookieLen := p.cookie.EncodedLen()
	status, text := rendezvous.StatusOK, ""
	resp := p.size + protowire.SizeTag(fieldDiscoverResponseCookie) + protowire.SizeBytes(cookieLen) +
		sizeEnum(fieldDiscoverResponseStatus, &status) + sizeString(fieldDiscoverResponseText, &text)
	typ := pb.Message_DISCOVER_RESPONSE
	msg := sizeEnum(fieldMessageType, &typ) + sizeSub(fieldMessageDiscoverResponse, resp)
	b = slices.Grow(b, protowire.SizeVarint(uint64(msg))+msg)
	b = protowire.AppendVarint(b, uint64(msg))
	b = appendEnum(b, fieldMessageType, &typ)
	b = appendSubHeader(b, fieldMessageDiscoverResponse, resp)
	for _, r := range p.regs {
		ttl := remainingSeconds(r.Expires, p.now)
		size := protowire.SizeTag(fieldRegisterNs) + protowire.SizeBytes(len(r.Namespace)) + protowire.SizeTag(fieldRegisterTTL) + protowire.SizeVarint(ttl)
		if r.Record != nil {
			size += protowire.SizeTag(fieldRegisterRecord) + protowire.SizeBytes(len(r.Record))
		}
		b = appendSubHeader(b, fieldDiscoverResponseRegistrations, size)
		b = protowire.AppendTag(b, fieldRegisterNs, protowire.BytesType)
		b = protowire.AppendString(b, r.Namespace)
		b = appendBytes(b, fieldRegisterRecord, r.Record)
		b = protowire.AppendTag(b, fieldRegisterTTL, protowire.VarintType)
		b = protowire.AppendVarint(b, ttl)
	}
	b = appendSubHeader(b, fieldDiscoverResponseCookie, cookieLen)
	b = p.cookie.Append(b)
	b = appendEnum(b, fieldDiscoverResponseStatus, &status)
	return appendString(b, fieldDiscoverResponseText, &text)
}
