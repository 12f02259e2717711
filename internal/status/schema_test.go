package status_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/status"
)

// schemaNode is the subset of JSON Schema docs/status.schema.json uses.
type schemaNode struct {
	Type                 string                 `json:"type"`
	Format               string                 `json:"format"`
	Enum                 []string               `json:"enum"`
	Required             []string               `json:"required"`
	Properties           map[string]*schemaNode `json:"properties"`
	Items                *schemaNode            `json:"items"`
	AdditionalProperties json.RawMessage        `json:"additionalProperties"`
}

func loadSchema(t *testing.T) *schemaNode {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "status.schema.json"))
	if err != nil {
		t.Fatalf("read schema: %v", err)
	}
	var s schemaNode
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("parse schema: %v", err)
	}
	return &s
}

// validate checks v (decoded JSON) against s and returns the problems.
func validate(s *schemaNode, v any, path string) []string {
	var out []string
	bad := func(f string, a ...any) { out = append(out, path+": "+fmt.Sprintf(f, a...)) }
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			return out
		}
		for _, k := range s.Required {
			if _, ok := m[k]; !ok {
				bad("missing required key %q", k)
			}
		}
		var extra *schemaNode
		closed := string(s.AdditionalProperties) == "false"
		if len(s.AdditionalProperties) > 0 && !closed {
			extra = &schemaNode{}
			if err := json.Unmarshal(s.AdditionalProperties, extra); err != nil {
				bad("bad additionalProperties: %v", err)
			}
		}
		for k, x := range m {
			switch p := s.Properties[k]; {
			case p != nil:
				out = append(out, validate(p, x, path+"."+k)...)
			case extra != nil:
				out = append(out, validate(extra, x, path+"."+k)...)
			case closed:
				bad("key %q is not in the schema", k)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			return out
		}
		for i, x := range a {
			out = append(out, validate(s.Items, x, fmt.Sprintf("%s[%d]", path, i))...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("want a string, got %T", v)
			return out
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, str) {
			bad("%q is not one of %v", str, s.Enum)
		}
		if s.Format == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				bad("not an RFC 3339 time: %q", str)
			}
		}
	case "number":
		if _, ok := v.(float64); !ok {
			bad("want a number, got %T", v)
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			bad("want an integer, got %v", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want a boolean, got %T", v)
		}
	}
	return out
}

// checkSchema validates r's JSON against docs/status.schema.json.
func checkSchema(t *testing.T, r *status.Report) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	for _, p := range validate(loadSchema(t), v, "$") {
		t.Error("schema: " + p)
	}
}

// The validator itself must reject what the schema forbids.
func TestSchemaValidatorRejects(t *testing.T) {
	s := loadSchema(t)
	r := &status.Report{Verdict: "FINE"}
	b, _ := json.Marshal(r)
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	v["extra_key"] = 1
	delete(v, "queue")
	probs := validate(s, v, "$")
	want := []string{`$.verdict: "FINE" is not one of`, `$: key "extra_key" is not in the schema`, `$: missing required key "queue"`}
	for _, w := range want {
		found := false
		for _, p := range probs {
			if len(p) >= len(w) && p[:len(w)] == w {
				found = true
			}
		}
		if !found {
			t.Errorf("validator did not report %q; got %v", w, probs)
		}
	}
}
