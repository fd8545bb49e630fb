package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/postgres"
)

// TestWatermarkHoldsBackLaterCommits: a transaction that wrote a
// registration is still open while a later one commits another, numbered
// above it. Discover returns neither until the first has ended, then both
// in order, so that a cookie taken in between cannot pass over the first.
func TestWatermarkHoldsBackLaterCommits(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	s := open(t, dsn, schema, postgres.WithDiscoverWait(50*time.Millisecond))
	ctx := context.Background()
	tx := beginTx(t, dsn)
	// Written as a point's writer writes it: numbered from its own id.
	if _, err := tx.Exec(ctx, `INSERT INTO `+schema+`.rendezvous_registrations (ns, peer, record, expires, seq)
		SELECT 'ns', $1, 'early', $2, seq + (pg_current_xact_id()::text::bigint << 9) + 1
		FROM `+schema+`.rendezvous_counters WHERE id = 1`, []byte(pid(1)), epoch.Add(time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	late, err := s.Register(ctx, reg("ns", pid(2), epoch.Add(time.Hour)), store.Limits{}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"ns", ""} {
		regs, err := s.Discover(ctx, nil, ns, 0, 10, epoch)
		if err != nil || len(regs) != 0 {
			t.Fatalf("Discover(%q) while the earlier transaction is open: %v, %v; want nothing", ns, regs, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"ns", ""} {
		regs, err := s.Discover(ctx, nil, ns, 0, 10, epoch)
		if err != nil || len(regs) != 2 || regs[0].Peer != pid(1) || regs[1].Peer != pid(2) || regs[1].Seq != late {
			t.Fatalf("Discover(%q) once it has ended: %v, %v; want peer 1, then peer 2 at seq %d", ns, regs, err, late)
		}
		if regs, err := s.Discover(ctx, nil, ns, regs[0].Seq, 10, epoch); err != nil || len(regs) != 1 || regs[0].Peer != pid(2) {
			t.Fatalf("Discover(%q) after the first: %v, %v; want peer 2", ns, regs, err)
		}
	}
}
