package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
)

// codeStatus maps every application error code to its one HTTP status.
// This table, with writeError, is the only place the mapping lives.
var codeStatus = map[string]int{
	core.EINVALID:      http.StatusBadRequest,
	core.ENOTFOUND:     http.StatusNotFound,
	core.ECONFLICT:     http.StatusConflict,
	core.EUNAUTHORIZED: http.StatusUnauthorized,
	core.EFORBIDDEN:    http.StatusForbidden,
	core.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	core.EUNAVAILABLE:  http.StatusServiceUnavailable,
	core.EINTERNAL:     http.StatusInternalServerError,
	core.ERATELIMITED:  http.StatusTooManyRequests,
	// A full owner queue: 429 with Retry-After (see retryAfterOf).
	core.EOWNERQUEUEFULL: http.StatusTooManyRequests,
}

// StatusForCode returns the HTTP status of an application error code
// (500 for unknown codes).
func StatusForCode(code string) int {
	if s, ok := codeStatus[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// writeError answers err as {"error":{"code","message","field"}}. Internal
// errors are logged with their detail and answered with a generic message;
// every error is counted by code.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := core.ErrorCode(err)
	if code == core.EINTERNAL && r.Context().Err() != nil &&
		(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// The caller went away (or its deadline passed) mid-request: not a
		// server fault, nothing to log.
		err = core.Errorf(core.EUNAVAILABLE, "request cancelled")
		code = core.EUNAVAILABLE
	}
	status, detail := s.errorDetail(r, err, code)
	if d, ok := retryAfterOf(err); ok && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", strconv.Itoa(max(int(math.Ceil(d.Seconds())), 1)))
	}
	if code == core.EUNAUTHORIZED {
		w.Header().Set("WWW-Authenticate", `Bearer realm="drover"`)
	}
	s.metrics.errors.WithLabelValues(code).Inc()
	writeJSON(w, status, wire.ErrorBody{Error: detail})
}

// errorDetail is the status and body of err, whose code is code: an
// internal error is logged with its detail and answered with a generic
// message.
func (s *Server) errorDetail(r *http.Request, err error, code string) (int, wire.ErrorDetail) {
	detail := wire.ErrorDetail{Code: code, Message: core.ErrorMessage(err)}
	if e, ok := errorsAsCore(err); ok {
		detail.Field = e.Field
		detail.Message = e.Message
	}
	if code == core.EINTERNAL {
		s.logger.ErrorContext(r.Context(), "api request failed",
			slog.String("method", r.Method), slog.String("route", r.Pattern),
			slog.String("error", err.Error()))
		detail.Message = "internal error"
		detail.Field = ""
	}
	return StatusForCode(code), detail
}

// jsonAppender is a body that writes its own JSON, the bytes json.Marshal
// would write, without reflection (the hot replies: claims, submits,
// tasks).
type jsonAppender interface {
	AppendJSON(b []byte) ([]byte, error)
}

// replyBufs recycles the buffers the hot replies are encoded into
// (*[]byte): Write copies the reply out, so a request allocates none.
var replyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledReply is the largest buffer kept for reuse: a rare huge reply
// (a batch submit's) is not held on to.
const maxPooledReply = 64 << 10

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b []byte
	var err error
	if a, ok := v.(jsonAppender); ok {
		buf := replyBufs.Get().(*[]byte)
		defer func() {
			if cap(b) <= maxPooledReply {
				*buf = b[:0]
				replyBufs.Put(buf)
			}
		}()
		b, err = a.AppendJSON((*buf)[:0])
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"internal error"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b = append(b, '\n')
	_, _ = w.Write(b)
}

func errorsAsCore(err error) (*core.Error, bool) {
	return errors.AsType[*core.Error](err)
}
