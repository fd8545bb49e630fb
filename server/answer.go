package server

import (
	"time"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// The answers below hold a response message and the values its optional
// fields point to in one allocation, where building them field by field
// (proto.String, Enum, ...) takes one allocation each.

// registerAnswer is a REGISTER_RESPONSE.
type registerAnswer struct {
	msg    pb.Message
	resp   pb.Message_RegisterResponse
	typ    pb.Message_MessageType
	status rendezvous.Status
	text   string
	ttl    uint64
}

// newRegisterAnswer is a REGISTER_RESPONSE of status, text and ttl.
func newRegisterAnswer(status rendezvous.Status, text string, ttl time.Duration) *pb.Message {
	a := &registerAnswer{typ: pb.Message_REGISTER_RESPONSE, status: status, text: text, ttl: uint64(ttl / time.Second)}
	a.resp.Status, a.resp.StatusText, a.resp.Ttl = &a.status, &a.text, &a.ttl
	a.msg.Type, a.msg.RegisterResponse = &a.typ, &a.resp
	return &a.msg
}

// discoverAnswer is a DISCOVER_RESPONSE.
type discoverAnswer struct {
	msg    pb.Message
	resp   pb.Message_DiscoverResponse
	typ    pb.Message_MessageType
	status rendezvous.Status
	text   string
}

// newDiscoverAnswer is a DISCOVER_RESPONSE of status and text, with regs
// and cookie.
func newDiscoverAnswer(status rendezvous.Status, text string, regs []*pb.Message_Register, cookie []byte) *pb.Message {
	a := &discoverAnswer{typ: pb.Message_DISCOVER_RESPONSE, status: status, text: text}
	a.resp.Registrations, a.resp.Cookie = regs, cookie
	a.resp.Status, a.resp.StatusText = &a.status, &a.text
	a.msg.Type, a.msg.DiscoverResponse = &a.typ, &a.resp
	return &a.msg
}

// discovered is one registration of a DISCOVER_RESPONSE.
type discovered struct {
	reg pb.Message_Register
	ns  string
	ttl uint64
}
