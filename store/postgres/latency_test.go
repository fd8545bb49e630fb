package postgres_test

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rendezvous-p2p/rendezvous/store/postgres"
)

// latencyConn puts a database rtt away: what the client writes reaches the
// server rtt later, in order, while the client goes on. Each round trip
// then costs rtt more, as to a database on another machine, without
// slowing what the client and server themselves do.
type latencyConn struct {
	net.Conn
	rtt time.Duration

	mu     sync.Mutex
	q      chan delayed
	closed bool
	err    error // the first error of a delayed write
}

// delayed is a write and when it may be delivered.
type delayed struct {
	at time.Time
	b  []byte
}

// newLatencyConn wraps c and starts delivering its writes.
func newLatencyConn(c net.Conn, rtt time.Duration) *latencyConn {
	l := &latencyConn{Conn: c, rtt: rtt, q: make(chan delayed, 4096)}
	go l.deliver()
	return l
}

func (l *latencyConn) deliver() {
	for d := range l.q {
		if w := time.Until(d.at); w > 0 {
			time.Sleep(w) // the simulated network, not synchronisation
		}
		if _, err := l.Conn.Write(d.b); err != nil {
			l.mu.Lock()
			if l.err == nil {
				l.err = err
			}
			l.mu.Unlock()
		}
	}
}

// Write queues b for delivery rtt from now.
func (l *latencyConn) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, net.ErrClosed
	}
	if l.err != nil {
		return 0, l.err
	}
	l.q <- delayed{at: time.Now().Add(l.rtt), b: append([]byte(nil), b...)}
	return len(b), nil
}

// Close closes the connection once what was written has been delivered.
func (l *latencyConn) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.q)
	}
	l.mu.Unlock()
	return l.Conn.Close()
}

// inSchemaRTT is inSchema(schema), the pool dialing through latencyConn
// (rtt 0: directly).
func inSchemaRTT(schema string, rtt time.Duration) postgres.Option {
	return postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["search_path"] = schema
		if rtt == 0 {
			return
		}
		var d net.Dialer
		c.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return newLatencyConn(conn, rtt), nil
		}
	})
}
