package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
)

// followPoll is how often --follow asks for new rows; followRetryMax bounds
// the wait between attempts while the server cannot be reached.
const (
	followPoll     = time.Second
	followRetryMax = 30 * time.Second
)

// parseSince reads --since: a duration back from now ("90m", "2h") or an
// RFC 3339 time ("2025-10-15T19:20:00Z"). Empty means no bound.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since: want a duration such as 90m or 2h, or an RFC 3339 time such as 2025-10-15T19:20:00Z (got %q)", v)
}

// follow calls step with the last id seen until ctx ends; step returns the
// new last id. Errors (the server restarting, the network) are reported on
// errOut and retried with a growing wait, resuming from the same id, so
// nothing is printed twice and nothing is skipped.
func follow(ctx context.Context, errOut io.Writer, last int64, step func(after int64) (int64, error)) error {
	wait := followPoll
	for {
		next, err := step(last)
		switch {
		case err == nil:
			last, wait = next, followPoll
		case ctx.Err() != nil:
			return nil
		case client.StatusOf(err) >= 400 && client.StatusOf(err) < 500:
			return err
		default:
			fmt.Fprintf(errOut, "drover: %v; retrying in %s\n", err, wait)
			wait = min(2*wait, followRetryMax)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// followEvents prints the events after last, oldest first, forever.
func followEvents(ctx context.Context, c *client.Client, errOut io.Writer, f wire.EventFilter, last int64, print func(*wire.Event)) error {
	f.Limit = 1000
	return follow(ctx, errOut, last, func(after int64) (int64, error) {
		for {
			evs, err := c.EventsAfter(ctx, f, after)
			if err != nil {
				return after, err
			}
			for _, e := range evs {
				print(e)
				after = e.ID
			}
			if len(evs) < f.Limit {
				return after, nil
			}
		}
	})
}

// followLogs prints the log lines after last, oldest first, forever.
func followLogs(ctx context.Context, c *client.Client, errOut io.Writer, f wire.LogFilter, print func(*wire.LogLine)) error {
	f.Limit = 1000
	return follow(ctx, errOut, f.AfterID, func(after int64) (int64, error) {
		for {
			f.AfterID = after
			lines, err := c.LogsAfter(ctx, f)
			if err != nil {
				return after, err
			}
			for _, l := range lines {
				print(l)
				after = l.ID
			}
			if len(lines) < f.Limit {
				return after, nil
			}
		}
	})
}
