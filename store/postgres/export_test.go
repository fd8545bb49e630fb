package postgres

// WithSweepDone calls done after each pass of the background sweeper.
func WithSweepDone(done func()) Option { return func(c *config) { c.sweepDone = done } }

// WriterStatements are the statements of a writer's batch that look rows up
// by their keys, each with the number of its parameters.
var WriterStatements = map[string]int{baseQuery: 6, updateRegs: 9}

// IndexPlans is what a writer's transaction runs before its statements.
const IndexPlans = indexPlans
