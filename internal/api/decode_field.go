package api

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// fieldOfTextError finds which field of the JSON document doc (decoded into
// a value of type t) holds a value its type's UnmarshalText rejects, such
// as a lease_token that is not a UUID: encoding/json reports such errors
// without the field's name. It returns an EINVALID naming the field path
// ("lease_token", "leases[2].task_id"), or nil when it finds none.
func fieldOfTextError(doc []byte, t reflect.Type) *core.Error {
	return locateText(doc, t, "")
}

func locateText(doc []byte, t reflect.Type, path string) *core.Error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		var s string
		if json.Unmarshal(doc, &s) != nil {
			return nil // not a string: a type error, reported as such
		}
		v := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := v.UnmarshalText([]byte(s)); err != nil {
			want := "a valid " + t.String()
			if t == reflect.TypeFor[uuid.UUID]() {
				want = "a UUID"
			}
			return core.Invalid(path, "want %s, got %q", want, truncate(s, 64))
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(doc, &obj) != nil {
			return nil
		}
		return locateStruct(obj, t, path)
	case reflect.Slice, reflect.Array:
		var items []json.RawMessage
		if json.Unmarshal(doc, &items) != nil {
			return nil
		}
		for i, item := range items {
			if e := locateText(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); e != nil {
				return e
			}
		}
	}
	return nil
}

func locateStruct(obj map[string]json.RawMessage, t reflect.Type, path string) *core.Error {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if e := locateStruct(obj, ft, path); e != nil {
					return e
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		raw, ok := obj[name]
		if !ok {
			continue
		}
		p := name
		if path != "" {
			p = path + "." + name
		}
		if e := locateText(raw, f.Type, p); e != nil {
			return e
		}
	}
	return nil
}
