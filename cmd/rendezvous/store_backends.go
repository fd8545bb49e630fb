package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/postgres"
	"github.com/rendezvous-p2p/rendezvous/store/sqlite"
)

func openEmbedded(path string, mmapSize int64) (store.Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return sqlite.Open(path, sqlite.WithMmapSize(mmapSize))
}

func openPostgres(ctx context.Context, dsn string) (store.Store, error) {
	return postgres.Open(ctx, dsn)
}
