package queue

import (
	"context"
	"fmt"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// completeRequest is one CompleteMany call waiting for its group commit.
type completeRequest struct {
	params *store.TaskCompleteParams
	reply  chan completeResult // buffered 1: the flusher never blocks
}

type completeResult struct {
	lost []core.Lease
	err  error
}

// commitCompletion group-commits one worker's completions. Natural group
// commit: when no flush runs, the call starts one at once (no added delay
// when idle); calls that arrive while a flush runs wait for the next one,
// which takes them all and commits them with one TaskCompleteBatch (one
// transaction), then answers each caller with its own stale leases.
func (s *Service) commitCompletion(ctx context.Context, p *store.TaskCompleteParams) ([]core.Lease, error) {
	req := &completeRequest{params: p, reply: make(chan completeResult, 1)}
	s.cmu.Lock()
	s.cpending = append(s.cpending, req)
	start := !s.cflushing
	s.cflushing = true
	s.cmu.Unlock()
	if start {
		// The flush must not die with the caller that started it: its
		// batch holds other callers' completions.
		go s.flushCompletions(context.WithoutCancel(ctx))
	}
	select {
	case r := <-req.reply:
		return r.lost, r.err
	case <-ctx.Done():
		// The completion may still commit; the caller sees the error and
		// the lease tells on the next heartbeat.
		return nil, context.Cause(ctx)
	}
}

// flushCompletions commits pending completions batch after batch until
// none are left.
func (s *Service) flushCompletions(base context.Context) {
	for {
		s.cmu.Lock()
		batch := s.cpending
		s.cpending = nil
		if len(batch) == 0 {
			s.cflushing = false
			s.cmu.Unlock()
			return
		}
		s.cmu.Unlock()
		ctx, cancel := context.WithTimeout(base, flushTimeout)
		s.commitCompletions(ctx, batch)
		cancel()
	}
}

// commitCompletions commits one batch. If the batch fails as a whole and
// holds several calls, each call is retried on its own so that one bad
// call does not fail the others.
func (s *Service) commitCompletions(ctx context.Context, batch []*completeRequest) {
	params := make([]*store.TaskCompleteParams, len(batch))
	for i, r := range batch {
		params[i] = r.params
	}
	lost, err := s.st.TaskComplete(ctx, params)
	if err == nil && len(lost) != len(batch) {
		err = fmt.Errorf("store returned %d results for %d completion calls", len(lost), len(batch))
	}
	if err != nil && len(batch) > 1 {
		for _, r := range batch {
			l, err := s.st.TaskComplete(ctx, []*store.TaskCompleteParams{r.params})
			if err == nil {
				r.reply <- completeResult{lost: l[0]}
			} else {
				r.reply <- completeResult{err: err}
			}
		}
		return
	}
	if err != nil {
		batch[0].reply <- completeResult{err: err}
		return
	}
	for i, r := range batch {
		r.reply <- completeResult{lost: lost[i]}
	}
}
