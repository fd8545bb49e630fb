package sqlite

// WithSweepDone calls done after each pass of the background sweeper.
func WithSweepDone(done func()) Option { return func(c *config) { c.sweepDone = done } }

// MmapSize is PRAGMA mmap_size on one of s's connections.
func MmapSize(s *Store) (int64, error) {
	var n int64
	err := s.db.QueryRow("PRAGMA mmap_size").Scan(&n)
	return n, err
}
