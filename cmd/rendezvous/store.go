package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// embeddedConfig is how serve opens the embedded store.
type embeddedConfig struct {
	mmapSize int64  // --embedded-mmap-size
	syncMode string // --embedded-sync: full or normal
}

// openStore opens the store that --store names: "embedded" (a database in
// dataDir, opened as emb says), "memory", or a postgres:// URL.
func openStore(ctx context.Context, spec, dataDir string, emb embeddedConfig) (store.Store, error) {
	switch {
	case spec == "memory":
		return memory.New(), nil
	case spec == "embedded":
		return openEmbedded(filepath.Join(dataDir, "registrations.db"), emb)
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		return openPostgres(ctx, spec)
	default:
		return nil, fmt.Errorf("unknown store %q: want embedded, memory or a postgres:// URL", spec)
	}
}

// redactStore is the --store setting with any password hidden, for logs.
func redactStore(spec string) string {
	u, err := url.Parse(spec)
	if err != nil || u.User == nil {
		return spec
	}
	return u.Redacted()
}
