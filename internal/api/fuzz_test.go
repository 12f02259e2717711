package api

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/droverhq/drover/internal/core"
)

// checkDecodeErr fails unless err is nil or a caller-facing *core.Error of an
// input class (never an internal error: bad input is the caller's fault).
func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	e, ok := errors.AsType[*core.Error](err)
	if !ok {
		t.Fatalf("decode error is %T, not *core.Error: %v", err, err)
	}
	if e.Code != core.EINVALID && e.Code != core.ETOOLARGE {
		t.Fatalf("decode error code %q for bad input: %v", e.Code, err)
	}
	if e.Field == "" {
		t.Fatalf("decode error names no field: %v", err)
	}
}

// roundTrip re-encodes an accepted request and decodes it again: anything
// the decoder accepts must survive the trip.
func roundTrip[T any](t *testing.T, v *T, decode func([]byte) (*T, error)) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-encode accepted request: %v", err)
	}
	if _, err := decode(b); err != nil {
		t.Fatalf("re-decode of %s: %v", b, err)
	}
}

func FuzzDecodeSubmit(f *testing.F) {
	f.Add([]byte(`{"type":"render","params":{"prompt":"a cat"},"priority":5,"timeout":"30m","depends_on":["#0"]}`))
	f.Add([]byte(`{"type":"x","timeout":90}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeSubmit(body)
		checkDecodeErr(t, err)
		if err == nil {
			roundTrip(t, req, DecodeSubmit)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`{"tasks":[{"type":"a"},{"type":"b","depends_on":["#0"]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeBatch(body)
		checkDecodeErr(t, err)
		if err == nil {
			roundTrip(t, req, DecodeBatch)
		}
	})
}

func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add([]byte(`{"leases":[{"task_id":"0190c8a4-0000-7000-8000-000000000001","lease_token":"0190c8a4-0000-7000-8000-000000000002"}],"metrics":{"gpu":1}}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeHeartbeat(body)
		checkDecodeErr(t, err)
		if err == nil {
			roundTrip(t, req, DecodeHeartbeat)
		}
	})
}

func FuzzDecodeComplete(f *testing.F) {
	f.Add([]byte(`{"worker_id":"0190c8a4-0000-7000-8000-000000000003","lease_token":"0190c8a4-0000-7000-8000-000000000002","result":{"ok":true}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeComplete(body)
		checkDecodeErr(t, err)
		if err == nil {
			roundTrip(t, req, DecodeComplete)
		}
	})
}

func FuzzDecodeLogs(f *testing.F) {
	f.Add([]byte(`{"lines":[{"stream":"stdout","line":"hello","task_id":"0190c8a4-0000-7000-8000-000000000001"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeLogs(body)
		checkDecodeErr(t, err)
		if err == nil {
			roundTrip(t, req, DecodeLogs)
		}
	})
}

func FuzzDecodeCompleteBatch(f *testing.F) {
	f.Add([]byte(`{"items":[{"task_id":"0190c8a4-0000-7000-8000-000000000001","lease_token":"0190c8a4-0000-7000-8000-000000000002","result":{}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeCompleteBatch(body)
		checkDecodeErr(t, err)
		if err == nil {
			roundTrip(t, req, DecodeCompleteBatch)
		}
	})
}

func FuzzDecodeClaim(f *testing.F) {
	f.Add([]byte(``))
	f.Add([]byte(`{"max":2}`))
	f.Add([]byte(`{"max":1,"complete":[{"task_id":"0190c8a4-0000-7000-8000-000000000001","lease_token":"0190c8a4-0000-7000-8000-000000000002","result":{}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeClaim(body)
		checkDecodeErr(t, err)
		if err == nil {
			roundTrip(t, req, DecodeClaim)
		}
	})
}
