package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
)

// The read models of why, breakers and series are package status's types,
// which the client does not import (it would pull the store into the
// agent): these calls decode into the caller's out (a *status.WhyReport,
// *[]status.Breaker …).

// Why explains a task, worker or pool (GET /v1/why/{kind}/{id}) into out
// (a *status.WhyReport).
func (c *Client) Why(ctx context.Context, kind, id string, out any) error {
	path := "/v1/why/" + url.PathEscape(kind) + "/" + url.PathEscape(id)
	return c.do(ctx, "explain "+kind, http.MethodGet, path, nil, nil, out, 0)
}

// Breakers lists every breaker with its numbers into out (a pointer to a
// struct with field `json:"breakers"`, as api.BreakerList).
func (c *Client) Breakers(ctx context.Context, out any) error {
	return c.do(ctx, "list breakers", http.MethodGet, "/v1/breakers", nil, nil, out, 0)
}

// BreakerSet resets or opens the breaker of key (action "reset" or
// "open") and decodes the breaker after into out (a *status.Breaker).
func (c *Client) BreakerSet(ctx context.Context, key, action, reason string, out any) error {
	in := map[string]string{"key": key}
	if reason != "" {
		in["reason"] = reason
	}
	return c.do(ctx, action+" breaker", http.MethodPost, "/v1/breakers/"+url.PathEscape(action), nil, in, out, 0)
}

// Series reads the fleet's samples over the last window (e.g. 1h, 24h)
// into out (a *status.SeriesReport).
func (c *Client) Series(ctx context.Context, window time.Duration, out any) error {
	q := url.Values{"window": {window.String()}}
	return c.do(ctx, "read series", http.MethodGet, "/v1/series", q, nil, out, 0)
}

// EventsAfter returns the settled events with id > after matching f,
// oldest first (one step of following the event log; see
// api.FollowSettle).
func (c *Client) EventsAfter(ctx context.Context, f wire.EventFilter, after int64) ([]*wire.Event, error) {
	q := url.Values{"follow": {"true"}, "after": {strconv.FormatInt(after, 10)}}
	if len(f.Kinds) > 0 {
		q.Set("kind", strings.Join(f.Kinds, ","))
	}
	setIf(q, "pool", f.Pool)
	setIf(q, "worker", f.WorkerID)
	setIf(q, "task", f.TaskID)
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out wire.EventList
	if err := c.do(ctx, "follow events", http.MethodGet, "/v1/events", q, nil, &out, 0); err != nil {
		return nil, err
	}
	return out.Events, nil
}

// LogsAfter returns the settled log lines with id > f.AfterID, oldest first
// (one step of following a task's or worker's logs).
func (c *Client) LogsAfter(ctx context.Context, f wire.LogFilter) ([]*wire.LogLine, error) {
	q := url.Values{"follow": {"true"}, "after": {strconv.FormatInt(f.AfterID, 10)}}
	setIf(q, "task", f.TaskID)
	setIf(q, "worker", f.WorkerID)
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out wire.LogList
	if err := c.do(ctx, "follow logs", http.MethodGet, "/v1/logs", q, nil, &out, 0); err != nil {
		return nil, err
	}
	return out.Lines, nil
}
