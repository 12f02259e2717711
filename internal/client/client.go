// Package client is the typed Go client of Drover's HTTP API (/v1). The
// worker agent and the operator CLI use it. It imports only the wire types:
// never the store or the queue.
//
// Every method takes a context first. Failures are returned as *Error when
// the server answered with an error body (carrying the code and the HTTP
// status), or as a wrapped transport error otherwise; IsLeaseLost,
// IsRetryable and CodeOf classify them.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/google/uuid"
)

// Client talks to one Drover server. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
	// timeout bounds each ordinary request; long-poll claims get their wait
	// on top of it.
	timeout   time.Duration
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient uses hc instead of a default client.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithTimeout bounds every request (default 30s); a long-poll claim gets
// its wait added.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// DefaultTimeout is the per-request timeout when none is configured.
const DefaultTimeout = 30 * time.Second

// New returns a client of the server at baseURL (e.g.
// "http://127.0.0.1:8080") authenticating with token (operator, owner or
// worker token; may be empty).
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("parse server url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server url %q: want http(s)://host[:port]", baseURL)
	}
	c := &Client{base: u.String(), token: token, timeout: DefaultTimeout, userAgent: "drover-client"}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		c.hc = &http.Client{Transport: tr}
	}
	return c, nil
}

// BaseURL returns the server URL.
func (c *Client) BaseURL() string { return c.base }

// Error is an error answered by the server.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the API error code (wire.CodeConflict, …).
	Code string
	// Field names the offending input field, if any.
	Field   string
	Message string
	// Op is what the client was doing ("claim tasks").
	Op string
}

// Error implements error.
func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" && !strings.HasPrefix(msg, e.Field+":") {
		msg = e.Field + ": " + msg
	}
	return fmt.Sprintf("%s: %s (%d %s)", e.Op, msg, e.Status, e.Code)
}

// CodeOf returns the API error code of err, "" when err is nil or not an
// answer of the server (a network error, for example).
func CodeOf(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return ""
}

// StatusOf returns the HTTP status of err, 0 when it is not a server answer.
func StatusOf(err error) int {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Status
	}
	return 0
}

// IsLeaseLost reports whether err is the server's 409: the lease is stale,
// the task is no longer the caller's, and nothing was changed.
func IsLeaseLost(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.Status == http.StatusConflict
}

// IsRetryable reports whether repeating the request later may succeed: a
// network error, a timeout, or a 5xx/429 answer. 4xx answers are final.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Status >= 500 || e.Status == http.StatusTooManyRequests
	}
	return !errors.Is(err, context.Canceled)
}

// do sends one request and decodes the JSON answer into out (when non-nil).
func (c *Client) do(ctx context.Context, op, method, path string, query url.Values, in, out any, extra time.Duration) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout+extra)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: encode request: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb wire.ErrorBody
		apiErr := &Error{Status: resp.StatusCode, Op: op}
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			apiErr.Code, apiErr.Message, apiErr.Field = eb.Error.Code, eb.Error.Message, eb.Error.Field
		} else {
			apiErr.Code = codeForStatus(resp.StatusCode)
			apiErr.Message = strings.TrimSpace(string(b))
			if apiErr.Message == "" {
				apiErr.Message = http.StatusText(resp.StatusCode)
			}
		}
		return apiErr
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s: decode response: %w", op, err)
	}
	return nil
}

// codeForStatus guesses a code for answers without an error body (e.g. a
// proxy's 502).
func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return wire.CodeInvalid
	case http.StatusUnauthorized:
		return wire.CodeUnauthorized
	case http.StatusForbidden:
		return wire.CodeForbidden
	case http.StatusNotFound:
		return wire.CodeNotFound
	case http.StatusConflict:
		return wire.CodeConflict
	case http.StatusRequestEntityTooLarge:
		return wire.CodeTooLarge
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return wire.CodeUnavailable
	}
	return wire.CodeInternal
}

func workerPath(id uuid.UUID, action string) string {
	return "/v1/workers/" + id.String() + "/" + action
}

func taskPath(id uuid.UUID, action string) string {
	p := "/v1/tasks/" + id.String()
	if action != "" {
		p += "/" + action
	}
	return p
}

// --- worker endpoints ---

// Register registers the agent of worker id and returns its configuration.
func (c *Client) Register(ctx context.Context, id uuid.UUID, req *wire.RegisterRequest) (*wire.RegisterResponse, error) {
	var out wire.RegisterResponse
	if err := c.do(ctx, "register worker", http.MethodPost, workerPath(id, "register"), nil, req, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// Heartbeat reports liveness, held leases and metrics; the answer carries
// the server's commands.
func (c *Client) Heartbeat(ctx context.Context, id uuid.UUID, req *wire.HeartbeatRequest) (*wire.HeartbeatResponse, error) {
	var out wire.HeartbeatResponse
	if err := c.do(ctx, "heartbeat", http.MethodPost, workerPath(id, "heartbeat"), nil, req, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// Claim asks for up to max tasks, waiting up to wait (≤ 30s) for one to
// become claimable. It returns an empty slice when the wait ran out.
func (c *Client) Claim(ctx context.Context, id uuid.UUID, max int, wait time.Duration) ([]wire.ClaimedTask, error) {
	var q url.Values
	if wait > 0 {
		q = url.Values{"wait": {wait.String()}}
	}
	var out wire.ClaimResponse
	if err := c.do(ctx, "claim tasks", http.MethodPost, workerPath(id, "claim"), q, &wire.ClaimRequest{Max: max}, &out, wait); err != nil {
		return nil, err
	}
	return out.Tasks, nil
}

// ClaimComplete reports finished tasks and claims up to max tasks in one
// request (POST /v1/workers/{id}/claim with a complete list): the server
// commits the completions first, so their slots count as free, then claims
// as Claim does, waiting up to wait. It returns the claimed tasks and the
// completions whose lease was stale (those changed nothing; every other
// item succeeded). A bad item rejects the whole request: nothing is
// completed and nothing claimed. With no items it is Claim. A server that
// predates the field answers 400 naming the field "complete" (see
// IsUnknownComplete).
func (c *Client) ClaimComplete(ctx context.Context, id uuid.UUID, max int, wait time.Duration, items []wire.CompleteItem) ([]wire.ClaimedTask, []wire.Lease, error) {
	var q url.Values
	if wait > 0 {
		q = url.Values{"wait": {wait.String()}}
	}
	var out wire.ClaimResponse
	if err := c.do(ctx, "claim tasks", http.MethodPost, workerPath(id, "claim"), q, &wire.ClaimRequest{Max: max, Complete: items}, &out, wait); err != nil {
		return nil, nil, err
	}
	if len(items) > 0 && out.Complete == nil {
		return nil, nil, fmt.Errorf("claim tasks: the reply has no outcome for the %d completions sent", len(items))
	}
	var lost []wire.Lease
	if out.Complete != nil {
		lost = out.Complete.Lost
	}
	return out.Tasks, lost, nil
}

// IsUnknownComplete reports whether err is the answer of a server that
// does not know the claim's complete field (400 naming it): the caller
// reports its completions on their own instead.
func IsUnknownComplete(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.Status == http.StatusBadRequest && e.Field == "complete"
}

// Complete reports success of a held task. A stale lease returns an error
// for which IsLeaseLost is true.
func (c *Client) Complete(ctx context.Context, workerID uuid.UUID, lease wire.Lease, result json.RawMessage) error {
	req := &wire.CompleteRequest{WorkerID: workerID, LeaseToken: lease.Token, Result: result}
	return c.do(ctx, "complete task", http.MethodPost, taskPath(lease.TaskID, "complete"), nil, req, nil, 0)
}

// CompleteBatch reports success of several held tasks in one request (and
// one transaction). It returns the leases that were stale: those changed
// nothing; every other item succeeded.
func (c *Client) CompleteBatch(ctx context.Context, workerID uuid.UUID, items []wire.CompleteItem) ([]wire.Lease, error) {
	var out wire.CompleteBatchResponse
	if err := c.do(ctx, "complete tasks", http.MethodPost, workerPath(workerID, "complete"), nil, &wire.CompleteBatchRequest{Items: items}, &out, 0); err != nil {
		return nil, err
	}
	return out.Lost, nil
}

// Fail reports a handler failure of a held task; retryable lets the server
// requeue it while attempts are left. It returns the task after the change.
func (c *Client) Fail(ctx context.Context, workerID uuid.UUID, lease wire.Lease, msg string, retryable bool) (*wire.Task, error) {
	req := &wire.FailRequest{WorkerID: workerID, LeaseToken: lease.Token, Error: msg, Retryable: retryable}
	var out wire.Task
	if err := c.do(ctx, "fail task", http.MethodPost, taskPath(lease.TaskID, "fail"), nil, req, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// Progress reports the progress (0..1, or nil) and a message of a held task.
func (c *Client) Progress(ctx context.Context, workerID uuid.UUID, lease wire.Lease, progress *float64, msg string) error {
	req := &wire.ProgressRequest{WorkerID: workerID, LeaseToken: lease.Token, Progress: progress, Message: msg}
	return c.do(ctx, "report progress", http.MethodPost, taskPath(lease.TaskID, "progress"), nil, req, nil, 0)
}

// Logs ships a batch of log lines of worker id.
func (c *Client) Logs(ctx context.Context, id uuid.UUID, lines []wire.LogLineIn) error {
	return c.do(ctx, "ship logs", http.MethodPost, workerPath(id, "logs"), nil, &wire.LogsRequest{Lines: lines}, nil, 0)
}

// --- operator endpoints ---

// Submit submits one task.
func (c *Client) Submit(ctx context.Context, req *wire.SubmitRequest) (*wire.SubmitResponse, error) {
	var out wire.SubmitResponse
	if err := c.do(ctx, "submit task", http.MethodPost, "/v1/tasks", nil, req, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// SubmitBatch submits up to 1000 tasks, all or nothing.
func (c *Client) SubmitBatch(ctx context.Context, reqs []wire.SubmitRequest) ([]wire.SubmitResponse, error) {
	var out wire.BatchSubmitResponse
	if err := c.do(ctx, "submit tasks", http.MethodPost, "/v1/tasks/batch", nil, &wire.BatchSubmitRequest{Tasks: reqs}, &out, 0); err != nil {
		return nil, err
	}
	return out.Results, nil
}

// setStates sets the comma-separated "state" filter when states is not empty.
func setStates[S ~string](q url.Values, states []S) {
	if len(states) == 0 {
		return
	}
	s := make([]string, len(states))
	for i, st := range states {
		s[i] = string(st)
	}
	q.Set("state", strings.Join(s, ","))
}

// Task returns one task.
func (c *Client) Task(ctx context.Context, id uuid.UUID) (*wire.Task, error) {
	var out wire.Task
	if err := c.do(ctx, "get task "+id.String(), http.MethodGet, taskPath(id, ""), nil, nil, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// Tasks lists tasks matching f, newest first.
func (c *Client) Tasks(ctx context.Context, f wire.TaskFilter) ([]*wire.Task, error) {
	q := url.Values{}
	setStates(q, f.States)
	setIf(q, "owner", f.Owner)
	setIf(q, "pool", f.Pool)
	setIf(q, "type", f.Type)
	setIf(q, "worker", f.WorkerID)
	setIf(q, "before", f.Before)
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out wire.TaskList
	if err := c.do(ctx, "list tasks", http.MethodGet, "/v1/tasks", q, nil, &out, 0); err != nil {
		return nil, err
	}
	return out.Tasks, nil
}

// Cancel cancels a queued or running task.
func (c *Client) Cancel(ctx context.Context, id uuid.UUID) (*wire.Task, error) {
	var out wire.Task
	if err := c.do(ctx, "cancel task "+id.String(), http.MethodPost, taskPath(id, "cancel"), nil, nil, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// Retry puts a failed or cancelled task back in the queue.
func (c *Client) Retry(ctx context.Context, id uuid.UUID) (*wire.Task, error) {
	var out wire.Task
	if err := c.do(ctx, "retry task "+id.String(), http.MethodPost, taskPath(id, "retry"), nil, nil, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// Workers lists workers matching f, oldest first.
func (c *Client) Workers(ctx context.Context, f wire.WorkerFilter) ([]*wire.Worker, error) {
	q := url.Values{}
	setStates(q, f.States)
	setIf(q, "pool", f.Pool)
	if f.Live {
		q.Set("live", "true")
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out wire.WorkerList
	if err := c.do(ctx, "list workers", http.MethodGet, "/v1/workers", q, nil, &out, 0); err != nil {
		return nil, err
	}
	return out.Workers, nil
}

// Drain asks worker id to finish its tasks and stop (state draining).
func (c *Client) Drain(ctx context.Context, id uuid.UUID, reason string) (*wire.Worker, error) {
	var out wire.Worker
	if err := c.do(ctx, "drain worker "+id.String(), http.MethodPost, workerPath(id, "drain"), nil, &wire.WorkerActionRequest{Reason: reason}, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// Terminate marks worker id for termination (not a failure).
func (c *Client) Terminate(ctx context.Context, id uuid.UUID, reason string) (*wire.Worker, error) {
	var out wire.Worker
	if err := c.do(ctx, "terminate worker "+id.String(), http.MethodPost, workerPath(id, "terminate"), nil, &wire.WorkerActionRequest{Reason: reason}, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// Events lists events matching f, newest first.
func (c *Client) Events(ctx context.Context, f wire.EventFilter) ([]*wire.Event, error) {
	q := url.Values{}
	if len(f.Kinds) > 0 {
		q.Set("kind", strings.Join(f.Kinds, ","))
	}
	setIf(q, "pool", f.Pool)
	setIf(q, "worker", f.WorkerID)
	setIf(q, "task", f.TaskID)
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if f.BeforeID > 0 {
		q.Set("before", strconv.FormatInt(f.BeforeID, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out wire.EventList
	if err := c.do(ctx, "list events", http.MethodGet, "/v1/events", q, nil, &out, 0); err != nil {
		return nil, err
	}
	return out.Events, nil
}

// LogLines lists log lines of a task or a worker, oldest first.
func (c *Client) LogLines(ctx context.Context, f wire.LogFilter) ([]*wire.LogLine, error) {
	q := url.Values{}
	setIf(q, "task", f.TaskID)
	setIf(q, "worker", f.WorkerID)
	if f.AfterID > 0 {
		q.Set("after", strconv.FormatInt(f.AfterID, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out wire.LogList
	if err := c.do(ctx, "list logs", http.MethodGet, "/v1/logs", q, nil, &out, 0); err != nil {
		return nil, err
	}
	return out.Lines, nil
}

// Status returns the fleet status report (the server's read model) as raw
// JSON; the CLI decodes it with the orchestrator's Status type.
func (c *Client) Status(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	if err := c.do(ctx, "get status", http.MethodGet, "/v1/status", nil, nil, &out, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// Health calls /healthz (liveness) and returns nil when the server answers.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, "health check", http.MethodGet, "/healthz", nil, nil, nil, 0)
}

// Ready calls /readyz and returns nil when the server is ready (database
// reachable and migrated).
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, "readiness check", http.MethodGet, "/readyz", nil, nil, nil, 0)
}

func setIf(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}
