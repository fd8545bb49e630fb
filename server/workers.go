package server

import (
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// streamWorkers are goroutines that outlive the streams they serve.
//
// The host starts a goroutine for each stream it accepts, and a new
// goroutine's stack is small: decoding a request outgrows it, and the
// runtime then copies the stack whole, adjusting every frame. Under
// DISCOVER load that copy was 7.7% of a point's CPU (runtime.newstack,
// called from proto.Unmarshal). A worker keeps the stack its first
// stream grew, so the streams after it are served without the copy.
type streamWorkers struct {
	// streams hands a stream to a worker. It is unbuffered: a send
	// succeeds only when a worker waits for one, so a stream never waits
	// behind a busy worker.
	streams chan network.Stream
	// running counts the workers, idle or busy; under Server.mu.
	running int
	// handedOff counts the streams served by a worker, each counted
	// before it is served.
	handedOff atomic.Int64
	// exited is called when a worker exits (tests).
	exited func()
}

// handleStream is the host's stream handler. It hands str to an idle
// worker, or else serves it on the host's goroutine, after starting a
// worker for the streams to come if fewer than Resources.StreamWorkers
// run.
func (s *Server) handleStream(str network.Stream) {
	select {
	case s.workers.streams <- str:
		return
	default:
	}
	s.startWorker()
	s.serveStream(str)
}

// startWorker starts a worker unless Resources.StreamWorkers run or the
// point is closed.
func (s *Server) startWorker() {
	s.mu.Lock()
	if s.closed || s.workers.running >= s.rc.StreamWorkers {
		s.mu.Unlock()
		return
	}
	s.workers.running++
	s.wg.Add(1)
	s.mu.Unlock()
	go s.streamWorker()
}

// streamWorker serves the streams handed to it until it has waited
// Resources.StreamWorkerIdle for one, or the point closes.
func (s *Server) streamWorker() {
	defer func() {
		s.mu.Lock()
		s.workers.running--
		s.mu.Unlock()
		if s.workers.exited != nil {
			s.workers.exited()
		}
		s.wg.Done()
	}()
	idle := time.NewTimer(s.rc.StreamWorkerIdle)
	defer idle.Stop()
	for {
		select {
		case str := <-s.workers.streams:
			s.workers.handedOff.Add(1)
			s.serveStream(str)
			idle.Reset(s.rc.StreamWorkerIdle)
		case <-idle.C:
			return
		case <-s.ctx.Done():
			return
		}
	}
}
