package agent

// Waiting, retrying and classifying the server's answers.

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
)

// backoff returns the wait before retry attempt n (0-based): exponential
// from RetryMin to RetryMax with jitter in [d/2, d].
func (a *Agent) backoff(n int) time.Duration {
	d := a.opt.RetryMin
	for i := 0; i < n && d < a.opt.RetryMax; i++ {
		d *= 2
	}
	d = min(d, a.opt.RetryMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// sleep waits d or until ctx ends or the agent drains; it reports whether
// the full wait elapsed.
func (a *Agent) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-a.drainCh:
		return false
	}
}

// sleepUnlessStopped waits d unless the agent is stopped meanwhile.
func (a *Agent) sleepUnlessStopped(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-a.stopCh:
		return false
	}
}

// fatalStatus reports whether err means this worker can no longer act:
// its token was refused (401/403) or the worker is unknown (404).
func fatalStatus(err error) bool {
	switch client.StatusOf(err) {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return true
	}
	return false
}

func truncateErr(s string) string {
	if len(s) <= core.MaxErrorBytes {
		return s
	}
	// Keep the end: the stderr tail is the useful part.
	return "…" + s[len(s)-core.MaxErrorBytes+len("…"):]
}
