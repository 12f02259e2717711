package provider

import (
	"context"
	"time"
)

// WithDeadline returns p with a deadline on every call: each runs under a
// context that ends after timeout, and a call that has not returned by
// then returns a transient error at once even if p ignores its context
// (the call is left to finish on its own goroutine; what it created is
// found by the next List and reconciled). A provider that honours its
// context answers within a short grace after the deadline, and that
// answer is returned: it knows more than the deadline does (a create
// whose outcome is unknown says so, MaybeCreated). A hung cloud API therefore
// costs the control loop at most timeout per call. timeout <= 0 returns p.
func WithDeadline(p Provider, timeout time.Duration) Provider {
	if timeout <= 0 {
		return p
	}
	return &deadlined{p: p, timeout: timeout}
}

type deadlined struct {
	p       Provider
	timeout time.Duration
}

// Unwrap returns the provider under the deadline.
func (d *deadlined) Unwrap() Provider { return d.p }

func (d *deadlined) Name() string { return d.p.Name() }

// call runs fn under the deadline.
func call[T any](ctx context.Context, d *deadlined, op string, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn(ctx)
		done <- result{v, err}
		cancel()
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		grace := time.NewTimer(graceOf(d.timeout))
		defer grace.Stop()
		select {
		case r := <-done: // it answered on its context's end
			return r.v, r.err
		case <-grace.C:
		}
		var zero T
		if ctx.Err() == context.DeadlineExceeded {
			return zero, NewError(op, KindTransient, "no answer from provider %s within call_timeout %s", d.p.Name(), d.timeout)
		}
		return zero, ctx.Err()
	}
}

// graceOf is how long a call past its deadline is given to answer on its
// context's end: a tenth of the timeout, from 10 ms to 1 s.
func graceOf(timeout time.Duration) time.Duration {
	return min(max(timeout/10, 10*time.Millisecond), time.Second)
}

func (d *deadlined) Create(ctx context.Context, req *CreateRequest) (*Instance, error) {
	return call(ctx, d, "create", func(ctx context.Context) (*Instance, error) { return d.p.Create(ctx, req) })
}

func (d *deadlined) Get(ctx context.Context, id string) (*Instance, error) {
	return call(ctx, d, "get", func(ctx context.Context) (*Instance, error) { return d.p.Get(ctx, id) })
}

func (d *deadlined) List(ctx context.Context) ([]*Instance, error) {
	return call(ctx, d, "list", func(ctx context.Context) ([]*Instance, error) { return d.p.List(ctx) })
}

func (d *deadlined) Delete(ctx context.Context, id string) error {
	_, err := call(ctx, d, "delete", func(ctx context.Context) (struct{}, error) { return struct{}{}, d.p.Delete(ctx, id) })
	return err
}
