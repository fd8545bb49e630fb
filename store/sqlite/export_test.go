package sqlite

// WithSweepDone calls done after each pass of the background sweeper.
func WithSweepDone(done func()) Option { return func(c *config) { c.sweepDone = done } }
