package sqlite

// WithSweepDone calls done after each pass of the background sweeper.
func WithSweepDone(done func()) Option { return func(c *config) { c.sweepDone = done } }

// WithSeqReserve sets how far the sequence limit of commits that are not
// synced moves at a time.
func WithSeqReserve(n int64) Option { return func(c *config) { c.seqReserve = n } }

// SeqLimit is the sequence limit in s's file.
func SeqLimit(s *Store) (int64, error) {
	var n int64
	err := s.db.QueryRow("SELECT seq_limit FROM meta WHERE id = 1").Scan(&n)
	return n, err
}

// MmapSize is PRAGMA mmap_size on one of s's connections.
func MmapSize(s *Store) (int64, error) {
	var n int64
	err := s.db.QueryRow("PRAGMA mmap_size").Scan(&n)
	return n, err
}

// SetFdatasync replaces the writer's sync of the log, fdatasync(2) of its
// descriptor, until restore is called.
func SetFdatasync(f func(fd int) error) (restore func()) {
	prev := fdatasync
	fdatasync = f
	return func() { fdatasync = prev }
}
