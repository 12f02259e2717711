package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// decodeJSON reads one JSON value of at most limit bytes from body into dst,
// rejecting unknown fields and trailing data. Errors are *core.Error:
// ETOOLARGE over the limit, EINVALID (naming the field where known)
// otherwise. When optional is true an empty body leaves dst unchanged.
func decodeJSON(body io.Reader, limit int64, dst any, optional bool) error {
	// The bytes read are kept to name the field of an error that
	// encoding/json reports without one.
	var seen bytes.Buffer
	lr := &limitReader{r: io.TeeReader(body, &seen), n: limit}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		if lr.over {
			return tooLarge(limit)
		}
		if errors.Is(err, io.EOF) {
			if optional {
				return nil
			}
			return core.Invalid("body", "request body is empty; want a JSON object")
		}
		jerr := jsonError(err)
		if e, ok := errors.AsType[*core.Error](jerr); ok && e.Field == "body" {
			if located := fieldOfTextError(seen.Bytes(), reflect.TypeOf(dst)); located != nil {
				return located
			}
		}
		return jerr
	}
	// Anything but whitespace after the value is an error.
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if lr.over {
			return tooLarge(limit)
		}
		return core.Invalid("body", "unexpected data after the JSON object")
	}
	if lr.over {
		return tooLarge(limit)
	}
	return nil
}

// decodeJSONBytes is decodeJSON for a body already in memory (every
// handler reads its body first): the same decoder and the same answers,
// without copying the bytes read aside (they are a prefix of body).
func decodeJSONBytes(body []byte, limit int64, dst any, optional bool) error {
	if int64(len(body)) > limit {
		return decodeJSON(bytesReader(body), limit, dst, optional)
	}
	r := bytes.NewReader(body)
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			if optional {
				return nil
			}
			return core.Invalid("body", "request body is empty; want a JSON object")
		}
		jerr := jsonError(err)
		if e, ok := errors.AsType[*core.Error](jerr); ok && e.Field == "body" {
			seen := body[:len(body)-r.Len()]
			if located := fieldOfTextError(seen, reflect.TypeOf(dst)); located != nil {
				return located
			}
		}
		return jerr
	}
	// Anything but whitespace after the value is an error.
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return core.Invalid("body", "unexpected data after the JSON object")
	}
	return nil
}

func tooLarge(limit int64) *core.Error {
	return &core.Error{Code: core.ETOOLARGE, Field: "body", Message: fmt.Sprintf("request body exceeds the limit of %d bytes", limit)}
}

// jsonError turns a json decoding error into an EINVALID naming the field.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return core.Invalid("body", "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		want := typ.Type.String()
		if typ.Type == reflect.TypeFor[wire.Duration]() {
			want = `a duration like "30s" or "6h"`
		}
		return core.Invalid(field, "want %s, got JSON %s", want, typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return core.Invalid("body", "malformed JSON: unexpected end of input")
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name, _ := strconv.Unquote(rest)
		if name == "" {
			name = rest
		}
		return core.Invalid(name, "unknown field")
	}
	if e, ok := errors.AsType[*core.Error](err); ok {
		return e
	}
	return core.Invalid("body", "%s", strings.TrimPrefix(msg, "json: "))
}

// limitReader reads at most n bytes and records whether the input had more.
type limitReader struct {
	r    io.Reader
	n    int64
	over bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// Probe one byte to tell "exactly at the limit" from "over it".
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.over = true
			return 0, errors.New("request body too large")
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// --- query and path parameters ---

func pathUUID(r *http.Request, name string) (uuid.UUID, error) {
	v := r.PathValue(name)
	id, err := uuid.Parse(v)
	if err != nil {
		return uuid.Nil, core.Invalid(name, "not a UUID: %q", truncate(v, 64))
	}
	return id, nil
}

func queryUUID(r *http.Request, name string) (*uuid.UUID, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	id, err := uuid.Parse(v)
	if err != nil {
		return nil, core.Invalid(name, "not a UUID: %q", truncate(v, 64))
	}
	return &id, nil
}

func queryInt(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, core.Invalid(name, "want an integer in [%d, %d], got %q", lo, hi, truncate(v, 32))
	}
	return n, nil
}

func queryInt64(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, core.Invalid(name, "want a non-negative integer, got %q", truncate(v, 32))
	}
	return n, nil
}

func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, core.Invalid(name, "want true or false, got %q", truncate(v, 32))
	}
	return b, nil
}

func queryTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, core.Invalid(name, "want an RFC 3339 time, got %q", truncate(v, 64))
	}
	return t.UTC(), nil
}

// queryList splits a comma-separated parameter (repeated parameters are
// joined too).
func queryList(r *http.Request, name string) []string {
	var out []string
	for _, v := range r.URL.Query()[name] {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// parseWait reads the claim long-poll wait ("30s", "500ms" or seconds).
func parseWait(r *http.Request, max time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, err2 := strconv.ParseFloat(v, 64)
		if err2 != nil {
			return 0, core.Invalid("wait", "want a duration like \"30s\", got %q", truncate(v, 32))
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < 0 || d > max {
		return 0, core.Invalid("wait", "must be between 0s and %s, got %q", max, truncate(v, 32))
	}
	return d, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// readBody reads the whole request body, failing with ETOOLARGE (and
// reading no further) when it exceeds limit.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, core.Invalid("body", "reading the request body: %v", err)
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(limit)
	}
	return b, nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
