package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/internal/testhost"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/server"
	"github.com/rendezvous-p2p/rendezvous/store"
)

// brokenStore fails every call with err.
type brokenStore struct{ err error }

func (b brokenStore) Register(context.Context, store.Registration, store.Limits, time.Time) (uint64, error) {
	return 0, b.err
}
func (b brokenStore) Unregister(context.Context, string, peer.ID) error { return b.err }
func (b brokenStore) Discover(context.Context, []store.Registration, string, uint64, int, time.Time) ([]store.Registration, error) {
	return nil, b.err
}
func (b brokenStore) Stats(context.Context, time.Time) (store.Stats, error) {
	return store.Stats{}, b.err
}
func (b brokenStore) Close() error { return nil }

func TestStoreFailuresGetStatuses(t *testing.T) {
	secret := "connection to 10.1.2.3 refused by pg_hba.conf"
	for _, tc := range []struct {
		name   string
		err    error
		status pb.Message_ResponseStatus
	}{
		{"unavailable", fmt.Errorf("%s: %w", secret, store.ErrUnavailable), pb.Message_E_UNAVAILABLE},
		{"timeout", fmt.Errorf("%s: %w", secret, context.DeadlineExceeded), pb.Message_E_UNAVAILABLE},
		{"other", errors.New(secret), pb.Message_E_INTERNAL_ERROR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testhost.New(t)
			srv, err := server.New(h, brokenStore{tc.err})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
			a := newPeer(t, &point{host: h})
			r := a.register("ns", 7200)
			d := a.discover("ns", 0, nil)
			if r.GetStatus() != tc.status || d.GetStatus() != tc.status {
				t.Fatalf("register %v, discover %v, want %v", r.GetStatus(), d.GetStatus(), tc.status)
			}
			for _, text := range []string{r.GetStatusText(), d.GetStatusText()} {
				if strings.Contains(text, "10.1.2.3") || text == "" {
					t.Fatalf("status text %q: want a text that does not leak the store's error", text)
				}
			}
		})
	}
}
