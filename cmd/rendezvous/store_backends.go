package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/postgres"
	"github.com/rendezvous-p2p/rendezvous/store/sqlite"
)

func openEmbedded(path string, emb embeddedConfig) (store.Store, error) {
	var mode string
	switch strings.ToLower(emb.syncMode) {
	case "full":
		mode = "FULL"
	case "normal":
		mode = "NORMAL"
	default:
		return nil, fmt.Errorf("--embedded-sync %q: want full or normal", emb.syncMode)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return sqlite.Open(path, sqlite.WithMmapSize(emb.mmapSize), sqlite.WithSynchronous(mode))
}

func openPostgres(ctx context.Context, dsn string) (store.Store, error) {
	return postgres.Open(ctx, dsn)
}
