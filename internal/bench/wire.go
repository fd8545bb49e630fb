package bench

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
)

// The load generator checks each answer by walking its wire format: the
// fields it checks are read in place and no registration is decoded into
// Go values, so that the generator's own cost per answer stays small next
// to the point's.

// Field numbers of rendezvous.proto that answers are checked by.
const (
	fieldMessageType             protowire.Number = 1
	fieldMessageRegisterResponse protowire.Number = 3
	fieldMessageDiscoverResponse protowire.Number = 6

	fieldRegisterNs     protowire.Number = 1
	fieldRegisterRecord protowire.Number = 2

	fieldResponseStatus protowire.Number = 1 // of a REGISTER_RESPONSE
	fieldResponseText   protowire.Number = 2 // of a REGISTER_RESPONSE

	fieldDiscoverRegistrations protowire.Number = 1
	fieldDiscoverStatus        protowire.Number = 3
	fieldDiscoverText          protowire.Number = 4
)

// errMalformed is an answer that is not a well-formed message.
var errMalformed = errors.New("malformed answer")

// answer is what is checked of a response.
type answer struct {
	typ    pb.Message_MessageType
	hasTyp bool
	status rendezvous.Status
	text   string
	// regs is the number of registrations of a DISCOVER_RESPONSE.
	regs int
}

// field is one field of a message, its value unparsed: v for a varint,
// b for bytes.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

// fields calls f for each field of the message in b, in order.
func fields(b []byte, f func(field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		fd := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			fd.v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			fd.b, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if err := f(fd); err != nil {
			return err
		}
	}
	return nil
}

// parseAnswer reads the type, status and registrations of a response;
// ns is the namespace every registration must be in.
func parseAnswer(b []byte, ns string) (answer, error) {
	var a answer
	err := fields(b, func(fd field) error {
		switch {
		case fd.num == fieldMessageType && fd.typ == protowire.VarintType:
			a.typ, a.hasTyp = pb.Message_MessageType(int32(fd.v)), true
		case fd.num == fieldMessageRegisterResponse && fd.typ == protowire.BytesType:
			return fields(fd.b, func(fd field) error {
				switch {
				case fd.num == fieldResponseStatus && fd.typ == protowire.VarintType:
					a.status = rendezvous.Status(int32(fd.v))
				case fd.num == fieldResponseText && fd.typ == protowire.BytesType:
					a.text = string(fd.b)
				}
				return nil
			})
		case fd.num == fieldMessageDiscoverResponse && fd.typ == protowire.BytesType:
			return fields(fd.b, func(fd field) error {
				switch {
				case fd.num == fieldDiscoverRegistrations && fd.typ == protowire.BytesType:
					a.regs++
					return checkRegistration(fd.b, ns)
				case fd.num == fieldDiscoverStatus && fd.typ == protowire.VarintType:
					a.status = rendezvous.Status(int32(fd.v))
				case fd.num == fieldDiscoverText && fd.typ == protowire.BytesType:
					a.text = string(fd.b)
				}
				return nil
			})
		}
		return nil
	})
	return a, err
}

// checkRegistration checks that the registration in b is in namespace ns
// and carries a record.
func checkRegistration(b []byte, ns string) error {
	var gotNs, gotRecord bool
	err := fields(b, func(fd field) error {
		switch {
		case fd.num == fieldRegisterNs && fd.typ == protowire.BytesType:
			if string(fd.b) != ns {
				return fmt.Errorf("registration in namespace %q, asked for %q", fd.b, ns)
			}
			gotNs = true
		case fd.num == fieldRegisterRecord && fd.typ == protowire.BytesType:
			gotRecord = len(fd.b) > 0
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case !gotNs:
		return errors.New("registration without a namespace")
	case !gotRecord:
		return errors.New("registration without a signed peer record")
	}
	return nil
}

// checkAnswer checks a response of type want to a request: its type, its
// status, and for a DISCOVER_RESPONSE that it holds at most limit
// registrations, each in namespace ns with a record. It returns the
// number of registrations.
func checkAnswer(b []byte, want pb.Message_MessageType, ns string, limit int) (int, error) {
	a, err := parseAnswer(b, ns)
	switch {
	case err != nil:
		return 0, err
	case !a.hasTyp || a.typ != want:
		return 0, fmt.Errorf("answer of type %v, want %v", a.typ, want)
	case a.status != rendezvous.StatusOK:
		return 0, &rendezvous.Error{Status: a.status, Text: a.text}
	case a.regs > limit:
		return 0, fmt.Errorf("%d registrations, more than the limit of %d", a.regs, limit)
	}
	return a.regs, nil
}
