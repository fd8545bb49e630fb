package rendezvous

import (
	"errors"
	"fmt"

	"github.com/rendezvous-p2p/rendezvous/pb"
)

// Status is the status of a REGISTER or DISCOVER response.
type Status = pb.Message_ResponseStatus

// The response statuses of the protocol.
const (
	StatusOK                      = pb.Message_OK
	StatusInvalidNamespace        = pb.Message_E_INVALID_NAMESPACE
	StatusInvalidSignedPeerRecord = pb.Message_E_INVALID_SIGNED_PEER_RECORD
	StatusInvalidTTL              = pb.Message_E_INVALID_TTL
	StatusInvalidCookie           = pb.Message_E_INVALID_COOKIE
	StatusNotAuthorized           = pb.Message_E_NOT_AUTHORIZED
	StatusInternalError           = pb.Message_E_INTERNAL_ERROR
	StatusUnavailable             = pb.Message_E_UNAVAILABLE
)

// Error is a non-OK response status with its text. It is what a server answers
// and what a client returns when a point refuses a request.
type Error struct {
	Status Status
	Text   string
}

// Errorf returns an *Error with the given status and a formatted text.
func Errorf(status Status, format string, args ...any) *Error {
	return &Error{Status: status, Text: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Text == "" {
		return e.Status.String()
	}
	return e.Status.String() + ": " + e.Text
}

// Is reports whether target is an *Error with the same status, so that
// errors.Is(err, &Error{Status: StatusInvalidTTL}) matches any text.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Status == e.Status
}

// StatusOf returns the status carried by err, StatusOK for nil, and
// StatusInternalError for an error that carries none.
func StatusOf(err error) Status {
	if err == nil {
		return StatusOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return StatusInternalError
}
