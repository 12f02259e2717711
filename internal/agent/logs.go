package agent

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// Log shipping limits.
const (
	logBatchLines  = 500   // lines per request
	logBufferLines = 20000 // lines kept while the server is unreachable
	logFlushEvery  = 500 * time.Millisecond
)

// logShipper buffers handler output lines and ships them to the server in
// batches. When the server is unreachable it keeps up to logBufferLines
// lines and drops the oldest beyond that (counting them).
type logShipper struct {
	api    API
	id     uuid.UUID
	clock  core.Clock
	logger *slog.Logger

	mu      sync.Mutex
	buf     []wire.LogLineIn
	dropped int
	kick    chan struct{}
	flushMu sync.Mutex
}

func newLogShipper(api API, id uuid.UUID, clock core.Clock, logger *slog.Logger) *logShipper {
	return &logShipper{api: api, id: id, clock: clock, logger: logger, kick: make(chan struct{}, 1)}
}

// add queues one line.
func (s *logShipper) add(taskID, stream, line string) {
	s.mu.Lock()
	s.buf = append(s.buf, wire.LogLineIn{Time: s.clock.Now(), TaskID: taskID, Stream: stream, Line: line})
	if over := len(s.buf) - logBufferLines; over > 0 {
		s.buf = append(s.buf[:0:0], s.buf[over:]...)
		s.dropped += over
	}
	full := len(s.buf) >= logBatchLines
	s.mu.Unlock()
	if full {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// run flushes periodically until ctx ends.
func (s *logShipper) run(ctx context.Context) {
	t := time.NewTicker(logFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		_ = s.flush(ctx)
	}
}

// flush ships everything buffered; on failure the lines stay buffered.
func (s *logShipper) flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	for {
		s.mu.Lock()
		if s.dropped > 0 {
			s.buf = append([]wire.LogLineIn{{Time: s.clock.Now(), Stream: "agent",
				Line: "log lines dropped while the server was unreachable: " + strconv.Itoa(s.dropped)}}, s.buf...)
			s.dropped = 0
		}
		n := min(len(s.buf), logBatchLines)
		batch := append([]wire.LogLineIn(nil), s.buf[:n]...)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		if err := s.api.Logs(ctx, s.id, batch); err != nil {
			s.logger.Debug("ship logs failed; will retry", "lines", n, "err", err)
			return err
		}
		s.mu.Lock()
		s.buf = append(s.buf[:0:0], s.buf[n:]...)
		s.mu.Unlock()
	}
}
