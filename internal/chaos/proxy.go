package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Proxy is a loopback load balancer in front of the replicas, built on
// httputil.ReverseProxy: requests go round robin; a backend that refuses the
// connection is skipped (the buffered request is tried on the next one); a
// health check marks a backend down after three missed /healthz answers in a
// row (a paused process accepts connections but never answers) and ends its
// requests in flight with 502, as a real load balancer would. A backend that
// answers again is marked up.
type Proxy struct {
	backends []*backend
	next     atomic.Uint64
	base     http.RoundTripper
	rp       *httputil.ReverseProxy
	hc       *http.Client
}

type backend struct {
	addr string
	up   atomic.Bool
	miss int // consecutive missed health checks (health loop only)

	mu       sync.Mutex
	seq      uint64
	inflight map[uint64]context.CancelFunc
}

// NewProxy returns a proxy for backends (host:port).
func NewProxy(backends []string) *Proxy {
	p := &Proxy{
		base: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
		hc: &http.Client{Timeout: 2 * time.Second},
	}
	for _, a := range backends {
		b := &backend{addr: a, inflight: map[uint64]context.CancelFunc{}}
		b.up.Store(true)
		p.backends = append(p.backends, b)
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.Out.URL.Scheme, r.Out.URL.Host = "http", "backend" },
		Transport:     roundTripFunc(p.roundTrip),
		FlushInterval: -1,
		ErrorLog:      nil,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "chaos proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	return p
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// ServeHTTP forwards one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.rp.ServeHTTP(w, r) }

// Health checks every backend every interval until ctx ends.
func (p *Proxy) Health(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var wg sync.WaitGroup
		for _, b := range p.backends {
			wg.Go(func() { p.check(ctx, b) })
		}
		wg.Wait()
	}
}

func (p *Proxy) check(ctx context.Context, b *backend) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addr+"/healthz", nil)
	if err != nil {
		return
	}
	resp, err := p.hc.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	switch {
	case err == nil && resp.StatusCode < 500:
		b.miss = 0
		b.up.Store(true)
	case errors.Is(err, syscall.ECONNREFUSED):
		b.miss = 3
		b.markDown()
	default:
		if b.miss++; b.miss >= 3 {
			b.markDown()
		}
	}
}

func (b *backend) markDown() {
	if !b.up.Swap(false) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, cancel := range b.inflight {
		cancel()
	}
}

func (b *backend) track(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	b.mu.Lock()
	b.seq++
	id := b.seq
	b.inflight[id] = cancel
	b.mu.Unlock()
	return ctx, func() {
		b.mu.Lock()
		delete(b.inflight, id)
		b.mu.Unlock()
		cancel()
	}
}

// trackedBody ends a request's tracking when its response body is closed.
type trackedBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (t *trackedBody) Close() error {
	err := t.ReadCloser.Close()
	t.once.Do(t.done)
	return err
}

func (p *Proxy) roundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		r.Body.Close()
	}
	start := int(p.next.Add(1))
	n := len(p.backends)
	var lastErr error
	// First the backends marked up, then (all down) every one of them.
	for pass := range 2 {
		for i := range n {
			b := p.backends[(start+i)%n]
			if (pass == 0) != b.up.Load() {
				continue
			}
			ctx, done := b.track(r.Context())
			out := r.Clone(ctx)
			out.URL.Host = b.addr
			out.Host = b.addr
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.ContentLength = int64(len(body))
			resp, err := p.base.RoundTrip(out)
			if err == nil {
				resp.Body = &trackedBody{ReadCloser: resp.Body, done: done}
				return resp, nil
			}
			done()
			lastErr = err
			if !refused(err) || r.Context().Err() != nil {
				return nil, err
			}
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no backend")
	}
	return nil, lastErr
}

// refused reports whether err means the request never reached a backend.
func refused(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial")
}
