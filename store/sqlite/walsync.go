package sqlite

// walSync is the writer's own sync of the write-ahead log, used under
// synchronous FULL where the platform has it (WithWriterSync). The writer
// connection then commits under synchronous NORMAL, which writes the
// commit's frames to the log without syncing them, and the writer syncs the
// log before it answers the batch. SQLite still syncs the log's header when
// it starts the log again and syncs both files at checkpoints, as it does
// under FULL, so what is on disk when a write is answered is what FULL puts
// there.
//
// The descriptor is the writer's own, opened on the log once the writer
// connection has opened it. SQLite keeps its descriptor of the log for as
// long as the connection is open and removes the file only when the last
// connection to the database closes, which the writer connection, held
// until Close, never is while the store is open: both descriptors name one
// file throughout.
type walSync struct {
	fd int
}

// sync makes every frame written to the log so far durable.
func (w *walSync) sync() error { return fdatasync(w.fd) }
