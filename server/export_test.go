package server

// StreamWorkersRunning is the number of stream workers, idle or busy.
func StreamWorkersRunning(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.workers.running
}

// StreamsHandedOff is the number of streams served by a stream worker.
func StreamsHandedOff(s *Server) int64 { return s.workers.handedOff.Load() }

// OnStreamWorkerExit calls f whenever a stream worker exits. Set it before
// the first stream.
func OnStreamWorkerExit(s *Server, f func()) { s.workers.exited = f }
