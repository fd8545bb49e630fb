package pb_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rendezvous-p2p/rendezvous/pb"
)

// FuzzDecodeMessage decodes arbitrary bytes as a Message: it never panics,
// and what decodes encodes again to a message that decodes the same.
func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte{0x08, 0x03, 0x2a, 0x04, 0x0a, 0x02, 0x6e, 0x73})
	f.Add([]byte{0x12, 0x06, 0x0a, 0x02, 0x6e, 0x73, 0x18, 0x3c})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m pb.Message
		if err := proto.Unmarshal(data, &m); err != nil {
			return
		}
		again, err := proto.Marshal(&m)
		if err != nil {
			t.Fatalf("re-encoding a decoded message: %v", err)
		}
		var m2 pb.Message
		if err := proto.Unmarshal(again, &m2); err != nil {
			t.Fatalf("decoding a re-encoded message: %v", err)
		}
		if !proto.Equal(&m, &m2) {
			t.Fatalf("round trip changed the message: %v != %v", &m, &m2)
		}
	})
}
