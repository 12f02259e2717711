package core

import (
	"errors"
	"fmt"
)

// Error codes. The API maps each code to exactly one HTTP status (in
// package api); everything else treats them as opaque.
const (
	EINVALID      = "invalid"      // bad input; 400
	ENOTFOUND     = "not_found"    // 404
	ECONFLICT     = "conflict"     // state conflict, e.g. stale lease; 409
	EUNAUTHORIZED = "unauthorized" // missing or wrong credentials; 401
	EFORBIDDEN    = "forbidden"    // credentials act outside their scope; 403
	ETOOLARGE     = "too_large"    // body or field over its limit; 413
	EUNAVAILABLE  = "unavailable"  // not leader, shutting down; 503
	EINTERNAL     = "internal"     // anything else; 500
	// ERATELIMITED: the caller's token is over its request rate; 429.
	ERATELIMITED = "rate_limited"
	// EOWNERQUEUEFULL: a submit would take its owner past
	// tasks.max_queued_per_owner; 429.
	EOWNERQUEUEFULL = "owner_queue_full"
)

// Error is an application error with a code and a message that is safe to
// show to the caller. Field names the offending input field, when there is one.
type Error struct {
	Code    string
	Field   string
	Message string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns an EINVALID error naming field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or EINTERNAL.
// A nil error has no code.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return ENOTFOUND
	case errors.Is(err, ErrLeaseLost), errors.Is(err, ErrConflict):
		return ECONFLICT
	}
	return EINTERNAL
}

// ErrorMessage returns the caller-safe message of err: the *Error message, or
// a generic text for internal errors (whose details belong in logs only).
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Error()
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return "not found"
	case errors.Is(err, ErrLeaseLost):
		return "lease lost: the task is no longer held under this lease token"
	case errors.Is(err, ErrConflict):
		return err.Error()
	}
	return "internal error"
}

// Sentinel errors shared by the store and the layers above it.
var (
	// ErrNotFound means the addressed row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrLeaseLost means a (task id, lease token) pair is stale: the task was
	// requeued, completed, failed or cancelled since the lease was granted.
	// Nothing was changed.
	ErrLeaseLost = errors.New("lease lost")
	// ErrConflict means a state transition was not allowed from the row's
	// current state (for example cancelling a succeeded task).
	ErrConflict = errors.New("conflict")
)
