package provider

import (
	"context"
	"time"
)

// WithDeadline returns p with a deadline on every call: each runs under a
// context that ends after timeout, and a call that has not returned by
// then returns a transient error at once even if p ignores its context
// (the call is left to finish on its own goroutine; a create that timed
// out is marked MaybeCreated, so the next List adopts what it made). A hung cloud API therefore
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
		select {
		case r := <-done: // it answered just in time
			return r.v, r.err
		default:
		}
		var zero T
		if ctx.Err() == context.DeadlineExceeded {
			err := NewError(op, KindTransient, "no answer from provider %s within call_timeout %s", d.p.Name(), d.timeout)
			// A create still running may yet make its instance: the
			// orchestrator keeps the spawn for the next List to adopt.
			err.MaybeCreated = op == "create"
			return zero, err
		}
		return zero, ctx.Err()
	}
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
