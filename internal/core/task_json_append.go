package core

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// AppendJSON appends the task's JSON form to b: the bytes encoding/json
// writes for t.JSON(), field for field (TestTaskAppendJSONMatchesReflection
// holds the two together). The API writes every task it returns, up to
// 1,000 per batch submit and one per claim, so this path avoids
// reflection; values it does not write itself byte-exactly (strings that
// need escaping, raw JSON with spaces or HTML characters, times outside
// years 0–9999) are handed to encoding/json one by one. A type that
// embeds Task and adds fields must define its own AppendJSON (as
// wire.ClaimedTask does): the API writes any body with an AppendJSON
// method through it.
func (t *Task) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"id":`...)
	b = appendUUID(b, t.ID)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, t.Type)
	b = append(b, `,"params":`...)
	if b, err = appendRawJSON(b, t.Params); err != nil {
		return nil, err
	}
	b = append(b, `,"owner":`...)
	b = appendJSONString(b, t.Owner)
	b = append(b, `,"priority":`...)
	b = strconv.AppendInt(b, int64(t.Priority), 10)
	b = append(b, `,"pool":`...)
	b = appendJSONString(b, t.Pool)
	if len(t.DependsOn) > 0 {
		b = append(b, `,"depends_on":[`...)
		for i, d := range t.DependsOn {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendUUID(b, d)
		}
		b = append(b, ']')
	}
	b = append(b, `,"max_attempts":`...)
	b = strconv.AppendInt(b, int64(t.MaxAttempts), 10)
	b = append(b, `,"max_lost":`...)
	b = strconv.AppendInt(b, int64(t.MaxLost), 10)
	if t.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":`...)
		b = appendJSONString(b, t.IdempotencyKey)
	}
	b = append(b, `,"state":`...)
	b = appendJSONString(b, string(t.State))
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(t.Attempt), 10)
	b = append(b, `,"failures":`...)
	b = strconv.AppendInt(b, int64(t.Failures), 10)
	b = append(b, `,"lost":`...)
	b = strconv.AppendInt(b, int64(t.Lost), 10)
	b = append(b, `,"deps_pending":`...)
	b = strconv.AppendInt(b, int64(t.DepsPending), 10)
	if t.WorkerID != nil {
		b = append(b, `,"worker_id":`...)
		b = appendUUID(b, *t.WorkerID)
	}
	if t.LeaseExpiresAt != nil {
		b = append(b, `,"lease_expires_at":`...)
		if b, err = appendJSONTime(b, *t.LeaseExpiresAt); err != nil {
			return nil, err
		}
	}
	if len(t.Result) > 0 {
		b = append(b, `,"result":`...)
		if b, err = appendRawJSON(b, t.Result); err != nil {
			return nil, err
		}
	}
	if t.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, t.Error)
	}
	if t.Progress != nil {
		b = append(b, `,"progress":`...)
		if b, err = appendJSONFloat(b, *t.Progress); err != nil {
			return nil, err
		}
	}
	if t.ProgressMsg != "" {
		b = append(b, `,"progress_message":`...)
		b = appendJSONString(b, t.ProgressMsg)
	}
	var prev time.Time
	var prevStart, prevEnd int
	for _, f := range [...]struct {
		key string
		t   *time.Time
	}{{`,"created_at":`, &t.CreatedAt}, {`,"run_after":`, &t.RunAfter}, {`,"started_at":`, t.StartedAt},
		{`,"finished_at":`, t.FinishedAt}, {`,"updated_at":`, &t.UpdatedAt}} {
		if f.t == nil {
			continue
		}
		b = append(b, f.key...)
		// A new task's times are one instant: write it once, copy it after.
		if prevEnd > 0 && *f.t == prev {
			b = append(b, b[prevStart:prevEnd]...)
			continue
		}
		start := len(b)
		if b, err = appendJSONTime(b, *f.t); err != nil {
			return nil, err
		}
		prev, prevStart, prevEnd = *f.t, start, len(b)
	}
	b = append(b, `,"timeout_s":`...)
	if b, err = appendJSONFloat(b, t.Timeout.Seconds()); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// appendUUID writes id as its quoted canonical text form.
func appendUUID(b []byte, id uuid.UUID) []byte {
	const digits = "0123456789abcdef"
	b = append(b, '"')
	for i, x := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, digits[x>>4], digits[x&0xf])
	}
	return append(b, '"')
}

// appendJSONString writes s as encoding/json does (HTML-safe): plain
// printable ASCII is copied, anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendRawJSON writes raw JSON as encoding/json writes a json.RawMessage
// field: null when empty, otherwise validated, compacted and HTML-escaped.
func appendRawJSON(b []byte, raw json.RawMessage) ([]byte, error) {
	if raw == nil {
		return append(b, "null"...), nil
	}
	plain := true
	for _, c := range raw {
		if c <= ' ' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			plain = false
			break
		}
	}
	if plain && json.Valid(raw) {
		return append(b, raw...), nil
	}
	q, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	return append(b, q...), nil
}

// appendJSONTime writes t as time.Time.MarshalJSON does: UTC times of
// years 0–9999 directly, others through MarshalJSON (which also rejects
// what RFC 3339 cannot write).
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 || t.Location() != time.UTC {
		q, err := t.MarshalJSON()
		if err != nil {
			return nil, err
		}
		return append(b, q...), nil
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendJSONFloat writes f as encoding/json writes a float64: like %g but
// with ES6's exponent cutoffs and no exponent padding.
func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		_, err := json.Marshal(f) // the same error encoding/json reports
		return nil, err
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}
