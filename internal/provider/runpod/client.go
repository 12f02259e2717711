package runpod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/droverhq/drover/internal/provider"
)

// DefaultBaseURL is RunPod's REST v2 API (paths carry the /v2 prefix).
const DefaultBaseURL = "https://api.runpod.io"

// Client defaults.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultMaxAttempts = 4
	DefaultBackoffBase = 500 * time.Millisecond
	DefaultBackoffMax  = 10 * time.Second
	// DefaultMaxRetryAfter caps how long one call waits for a 429's
	// Retry-After before it gives up with a rate-limited error.
	DefaultMaxRetryAfter = 60 * time.Second
)

// ClientOptions configure a Client.
type ClientOptions struct {
	// BaseURL defaults to DefaultBaseURL.
	BaseURL string
	// APIKey is the bearer token. It is never logged nor put in an error.
	APIKey string
	// HTTPClient defaults to a client with no overall timeout (each request
	// gets Timeout through its context).
	HTTPClient *http.Client
	// Timeout bounds one HTTP request (DefaultTimeout).
	Timeout time.Duration
	// MaxAttempts bounds the tries of one call, retries included.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the jittered exponential backoff
	// between retries of 5xx answers and timeouts.
	BackoffBase, BackoffMax time.Duration
	// MaxRetryAfter caps the wait for a 429's Retry-After.
	MaxRetryAfter time.Duration
	// Now and Sleep are the clock (defaults: the wall clock and a timer).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// UserAgent is sent with every request.
	UserAgent string
}

// Client speaks RunPod's REST v2 API. Safe for concurrent use.
type Client struct {
	opt     ClientOptions
	base    string
	hc      *http.Client
	limiter *Limiter
	calls   atomic.Int64
}

// NewClient returns a client.
func NewClient(opt ClientOptions) (*Client, error) {
	if opt.BaseURL == "" {
		opt.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(opt.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("runpod: base URL %q: want http(s)://host", opt.BaseURL)
	}
	if opt.APIKey == "" {
		return nil, errors.New("runpod: an API key is required (DROVER_RUNPOD_API_KEY or providers.runpod.api_key_file)")
	}
	if opt.HTTPClient == nil {
		opt.HTTPClient = &http.Client{}
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = DefaultMaxAttempts
	}
	if opt.BackoffBase <= 0 {
		opt.BackoffBase = DefaultBackoffBase
	}
	if opt.BackoffMax <= 0 {
		opt.BackoffMax = DefaultBackoffMax
	}
	if opt.MaxRetryAfter <= 0 {
		opt.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Sleep == nil {
		opt.Sleep = SleepContext
	}
	if opt.UserAgent == "" {
		opt.UserAgent = "drover"
	}
	return &Client{
		opt: opt, base: strings.TrimRight(opt.BaseURL, "/"), hc: opt.HTTPClient,
		limiter: NewLimiter(opt.Now, opt.Sleep),
	}, nil
}

// SleepContext waits d or until ctx ends.
func SleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Limiter returns the client's rate limiter.
func (c *Client) Limiter() *Limiter { return c.limiter }

// Calls returns how many HTTP requests the client has sent.
func (c *Client) Calls() int64 { return c.calls.Load() }

// CreatePod sends POST /v2/pods once per attempt. A 5xx or a timeout may
// still have created the pod, so those are not retried here: the caller
// (Provider.Create) looks for the pod by name first.
func (c *Client) CreatePod(ctx context.Context, req *CreatePodRequest) (*Pod, error) {
	var pod Pod
	if err := c.do(ctx, "create", http.MethodPost, "/v2/pods", nil, req, &pod, false); err != nil {
		return nil, err
	}
	return &pod, nil
}

// GetPod is GET /v2/pods/{id}; a 404 is an error matching
// provider.ErrNotFound.
func (c *Client) GetPod(ctx context.Context, id string) (*Pod, error) {
	var pod Pod
	if err := c.do(ctx, "get", http.MethodGet, "/v2/pods/"+url.PathEscape(id), nil, nil, &pod, true); err != nil {
		return nil, err
	}
	return &pod, nil
}

// ListPods is GET /v2/pods (the {"pods": […]} wrapper).
func (c *Client) ListPods(ctx context.Context) ([]Pod, error) {
	var out ListPodsResponse
	if err := c.do(ctx, "list", http.MethodGet, "/v2/pods", nil, nil, &out, true); err != nil {
		return nil, err
	}
	if out.Pods == nil {
		return nil, provider.NewError("list", provider.KindTransient, "answer has no \"pods\" array")
	}
	return out.Pods, nil
}

// DeletePod is DELETE /v2/pods/{id} (204). A 404 is an error matching
// provider.ErrNotFound, which callers treat as success.
func (c *Client) DeletePod(ctx context.Context, id string) error {
	return c.do(ctx, "delete", http.MethodDelete, "/v2/pods/"+url.PathEscape(id), nil, nil, nil, true)
}

// GPUTypes is GET /v2/catalog/gpus?include=AVAILABILITY&product=POD.
func (c *Client) GPUTypes(ctx context.Context) ([]GPUType, error) {
	var out ListGPUTypesResponse
	q := url.Values{"include": {"AVAILABILITY"}, "product": {"POD"}}
	if err := c.do(ctx, "catalog", http.MethodGet, "/v2/catalog/gpus", q, nil, &out, true); err != nil {
		return nil, err
	}
	return out.GPUs, nil
}

// do sends one call with retries: 5xx and timeouts (only when retry5xx)
// after a jittered backoff, 429 after its Retry-After; never 4xx.
func (c *Client) do(ctx context.Context, op, method, path string, q url.Values, in, out any, retry5xx bool) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return &provider.Error{Op: op, Kind: provider.KindInvalid, Message: "encode request", Err: err}
		}
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var last error
	for attempt := 1; ; attempt++ {
		if err := c.limiter.Wait(ctx); err != nil {
			return &provider.Error{Op: op, Kind: provider.KindTransient, Message: "waiting for the rate limit", Err: err}
		}
		status, retryAfter, err := c.once(ctx, op, method, u, body, out)
		if err == nil {
			return nil
		}
		last = err
		kind := provider.KindOf(err)
		if attempt >= c.opt.MaxAttempts || ctx.Err() != nil {
			return last
		}
		var wait time.Duration
		switch {
		case kind == provider.KindRateLimited:
			if retryAfter > c.opt.MaxRetryAfter {
				return last
			}
			wait = retryAfter
		case kind == provider.KindTransient && retry5xx && (status >= 500 || status == 0):
			wait = c.backoff(attempt)
		default:
			return last
		}
		if err := c.opt.Sleep(ctx, wait); err != nil {
			return last
		}
	}
}

// backoff is full-jitter exponential backoff for the given attempt.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.opt.BackoffBase << (attempt - 1)
	if d <= 0 || d > c.opt.BackoffMax {
		d = c.opt.BackoffMax
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// once sends one HTTP request and classifies the answer. It returns the
// HTTP status (0 on a network error) and a 429's Retry-After.
func (c *Client) once(ctx context.Context, op, method, u string, body []byte, out any) (int, time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, c.opt.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, u, rd)
	if err != nil {
		c.limiter.Done()
		return 0, 0, &provider.Error{Op: op, Kind: provider.KindInvalid, Message: "build request", Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+c.opt.APIKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.opt.UserAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.calls.Add(1)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.limiter.Done()
		return 0, 0, &provider.Error{Op: op, Kind: provider.KindTransient, Message: "request failed", Err: scrubURLError(err)}
	}
	defer resp.Body.Close()
	c.limiter.Observe(resp.Header.Get("RateLimit-Policy"), resp.Header.Get("RateLimit"))
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, 0, &provider.Error{Op: op, Kind: provider.KindTransient, Message: "read answer", Err: scrubURLError(err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil || resp.StatusCode == http.StatusNoContent {
			return resp.StatusCode, 0, nil
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, 0, &provider.Error{Op: op, Kind: provider.KindTransient, Message: fmt.Sprintf("decode %d answer", resp.StatusCode), Err: err}
		}
		return resp.StatusCode, 0, nil
	}
	var retryAfter time.Duration
	if resp.StatusCode == http.StatusTooManyRequests {
		retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), c.opt.Now())
		c.limiter.Block(retryAfter)
	}
	return resp.StatusCode, retryAfter, classify(op, resp.StatusCode, raw, retryAfter)
}

// parseRetryAfter reads delta-seconds or an HTTP date; absent or bad → 1 s.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
		return 0
	}
	return time.Second
}

// scrubURLError drops the URL from a *url.Error (it names the host and
// path only, but keeping errors short and free of request data is the
// rule); the cause is kept.
func scrubURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		if ue.Timeout() {
			return fmt.Errorf("timeout: %w", ue.Err)
		}
		return ue.Err
	}
	return err
}

// IsTimeout reports whether err is a network timeout.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
