package memory_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendezvous-p2p/rendezvous/store"
	"github.com/rendezvous-p2p/rendezvous/store/memory"
)

// model is the plainest store there is: a map, searched whole.
type model struct {
	regs map[string]store.Registration // by namespace + "/" + peer
}

func (m *model) live(now time.Time) []store.Registration {
	var out []store.Registration
	for _, r := range m.regs {
		if r.Expires.After(now) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b store.Registration) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

func (m *model) discover(ns string, after uint64, limit int, now time.Time) []store.Registration {
	var out []store.Registration
	for _, r := range m.live(now) {
		if len(out) < limit && r.Seq > after && (ns == "" || r.Namespace == ns) {
			out = append(out, r)
		}
	}
	return out
}

// modelShape is the scale of one model test: how many namespaces and peers
// there are to pick from, the store's limits, and the largest page asked.
type modelShape struct {
	namespaces, peers int
	limits            store.Limits
	maxLimit          int
	maxTTL            int // seconds
}

// TestAgainstModel runs random registrations, refreshes, unregistrations,
// expiries and discovers on the store and on a model of it, and compares
// every answer: namespaces come and go, and so do peers within them. The
// small shape runs into every limit; the large one fills namespaces with
// hundreds of registrations, so that their sequence lists split into chunks
// and merge them again.
func TestAgainstModel(t *testing.T) {
	shapes := map[string]modelShape{
		"small": {5, 6, store.Limits{MaxRegistrationsPerPeer: 3, MaxRegistrations: 12, MaxNamespaces: 4}, 5, 20},
		"large": {3, 400, store.Limits{MaxRegistrationsPerPeer: 3, MaxRegistrations: 1000, MaxNamespaces: 3}, 150, 3000},
	}
	seeds := map[string]uint64{"small": 20, "large": 3}
	for name, shape := range shapes {
		for seed := range seeds[name] {
			t.Run(fmt.Sprintf("%s/%d", name, seed), func(t *testing.T) { testAgainstModel(t, shape, seed) })
		}
	}
}

func testAgainstModel(t *testing.T, shape modelShape, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	s := memory.New()
	defer s.Close()
	m := &model{regs: map[string]store.Registration{}}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	limits := shape.limits
	var buf []store.Registration
	for step := range 3000 {
		ns := fmt.Sprintf("ns%d", rng.IntN(shape.namespaces))
		p := peer.ID(fmt.Sprintf("p%d", rng.IntN(shape.peers)))
		switch op := rng.IntN(10); {
		case op < 5:
			r := store.Registration{
				Namespace: ns, Peer: p,
				Record:  []byte(fmt.Sprintf("record %d", step)),
				Expires: now.Add(time.Duration(1+rng.IntN(shape.maxTTL)) * time.Second),
			}
			want := modelRegister(m, r, limits, now)
			seq, err := s.Register(ctx, r, limits, now)
			if (err == nil) != (want == nil) || (err != nil && err != want) {
				t.Fatalf("step %d: Register(%s, %s) = %v, model says %v", step, ns, p, err, want)
			}
			if err == nil {
				r.Seq = seq
				m.regs[ns+"/"+string(p)] = r
			}
		case op < 6:
			if err := s.Unregister(ctx, ns, p); err != nil {
				t.Fatal(err)
			}
			delete(m.regs, ns+"/"+string(p))
		case op < 7:
			now = now.Add(time.Duration(rng.IntN(4)) * time.Second)
		default:
			if rng.IntN(3) == 0 {
				ns = ""
			}
			live := m.live(now)
			var after uint64
			if len(live) > 0 && rng.IntN(2) == 0 {
				after = live[rng.IntN(len(live))].Seq
			}
			limit := 1 + rng.IntN(shape.maxLimit)
			var err error
			buf, err = s.Discover(ctx, buf[:0], ns, after, limit, now)
			if err != nil {
				t.Fatal(err)
			}
			want := m.discover(ns, after, limit, now)
			if describe(buf) != describe(want) {
				t.Fatalf("step %d: Discover(%q, %d, %d)\n got %s\nwant %s", step, ns, after, limit, describe(buf), describe(want))
			}
		}
		st, err := s.Stats(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		live := m.live(now)
		names := map[string]bool{}
		for _, r := range live {
			names[r.Namespace] = true
		}
		if st.Registrations != len(live) || st.Namespaces != len(names) {
			t.Fatalf("step %d: Stats %+v, model has %d registrations in %d namespaces", step, st, len(live), len(names))
		}
	}
}

// modelRegister is the error Register must give, by the model.
func modelRegister(m *model, r store.Registration, limits store.Limits, now time.Time) error {
	if old, ok := m.regs[r.Namespace+"/"+string(r.Peer)]; ok && old.Expires.After(now) {
		return nil
	}
	live := m.live(now)
	mine, names := 0, map[string]bool{}
	for _, l := range live {
		if l.Peer == r.Peer {
			mine++
		}
		names[l.Namespace] = true
	}
	switch {
	case mine >= limits.MaxRegistrationsPerPeer:
		return store.ErrPeerLimit
	case len(live) >= limits.MaxRegistrations:
		return store.ErrFull
	case !names[r.Namespace] && len(names) >= limits.MaxNamespaces:
		return store.ErrFull
	}
	return nil
}

func describe(regs []store.Registration) string {
	out := ""
	for _, r := range regs {
		out += fmt.Sprintf("[%s/%s seq %d exp %d %q] ", r.Namespace, r.Peer, r.Seq, r.Expires.Unix(), r.Record)
	}
	return out
}
