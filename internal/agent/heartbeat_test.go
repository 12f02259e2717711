package agent

import (
	"testing"
	"time"
)

// One heartbeat request never holds the beats for long: several fit in the
// server's heartbeat_timeout, so a replica that hangs behind a load
// balancer costs one short wait and the next beat goes elsewhere.
func TestBeatTimeout(t *testing.T) {
	t.Parallel()
	cases := []struct {
		interval, server, want time.Duration
	}{
		{500 * time.Millisecond, 10 * time.Second, 2 * time.Second}, // the replicas e2e test
		{5 * time.Second, 25 * time.Second, 5 * time.Second},        // defaults: never below the interval
		{time.Second, 2 * time.Minute, 10 * time.Second},            // capped
		{10 * time.Millisecond, time.Second, time.Second},           // at least 1s
		{5 * time.Second, 0, 10 * time.Second},                      // server names no timeout
	}
	for _, c := range cases {
		got := beatTimeout(c.interval, c.server)
		if got != c.want {
			t.Errorf("beatTimeout(%s, %s) = %s, want %s", c.interval, c.server, got, c.want)
		}
		if c.server > 0 && c.server >= 3*time.Second && 3*got > c.server {
			t.Errorf("beatTimeout(%s, %s) = %s: fewer than 3 beats fit in the server's timeout", c.interval, c.server, got)
		}
	}
}
