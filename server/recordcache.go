package server

import (
	"crypto/sha256"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous"
)

// verifiedRecord is the last signed peer record a peer registered with
// that verified: the digest of the bytes as received, and what the point
// keeps of them.
type verifiedRecord struct {
	digest [sha256.Size]byte
	kept   []byte
}

// recordCache remembers, per peer, the last record that verified, so a
// refresh carrying the same bytes (every refresh, until the peer's
// addresses change) skips the signature check. A changed record is
// verified as any other. It holds at most Resources.RecordCacheSize peers,
// the least recently used dropped first; nil caches nothing.
type recordCache struct {
	peers *lru.Cache[peer.ID, verifiedRecord]
}

func newRecordCache(size int) (*recordCache, error) {
	if size == 0 {
		return nil, nil
	}
	c, err := lru.New[peer.ID, verifiedRecord](size)
	if err != nil {
		return nil, err
	}
	return &recordCache{peers: c}, nil
}

// verify is rendezvous.VerifyRegistrationRecord for a REGISTER from remote,
// answered from the cache when remote sent these very bytes before.
func (c *recordCache) verify(data []byte, remote peer.ID, maxSize int) ([]byte, error) {
	if c == nil || len(data) > maxSize {
		_, kept, err := rendezvous.VerifyRegistrationRecord(data, remote, maxSize)
		return kept, err
	}
	digest := sha256.Sum256(data)
	if v, ok := c.peers.Get(remote); ok && v.digest == digest {
		return v.kept, nil
	}
	_, kept, err := rendezvous.VerifyRegistrationRecord(data, remote, maxSize)
	if err != nil {
		return nil, err
	}
	c.peers.Add(remote, verifiedRecord{digest: digest, kept: kept})
	return kept, nil
}
