package api

import (
	"errors"
	"time"
)

// retryAfter is implemented by errors that tell the caller when to try
// again (a full owner queue).
type retryAfter interface {
	error
	RetryAfter() time.Duration
}

// retryAfterOf returns the wait an error asks its caller for.
func retryAfterOf(err error) (time.Duration, bool) {
	if e, ok := errors.AsType[retryAfter](err); ok {
		return e.RetryAfter(), true
	}
	return 0, false
}
