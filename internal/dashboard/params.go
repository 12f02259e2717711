package dashboard

import (
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// query reads a page's query strictly: every parameter must be one the
// page knows, and each is read once with its limits. The first problem is
// kept and reported as a 400 page naming the parameter.
type query struct {
	v   url.Values
	err error
}

// newQuery checks that q has only the allowed parameters (partial is always
// allowed) and that none is repeated.
func newQuery(q url.Values, allowed ...string) *query {
	p := &query{v: q}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if k != "partial" && !slices.Contains(allowed, k) {
			p.fail("unknown parameter %s (this page takes %s)", strconv.Quote(truncate(k, 32)), strings.Join(allowed, ", "))
			break
		}
		if len(q[k]) > 1 {
			p.fail("parameter %s is given %d times; give it once", k, len(q[k]))
			break
		}
	}
	return p
}

func (p *query) fail(format string, args ...any) {
	if p.err == nil {
		p.err = badRequest("bad query: "+format, args...)
	}
}

// str reads a free-text parameter of at most max bytes.
func (p *query) str(name string, max int) string {
	s := p.v.Get(name)
	if len(s) > max {
		p.fail("parameter %s is %d bytes long; the limit is %d", name, len(s), max)
		return ""
	}
	return s
}

// oneOf reads a parameter that must be one of the choices ("" allowed when
// def is "").
func (p *query) oneOf(name, def string, choices ...string) string {
	s := p.v.Get(name)
	if s == "" {
		return def
	}
	if !slices.Contains(choices, s) {
		p.fail("parameter %s=%s: want one of %s", name, strconv.Quote(truncate(s, 32)), strings.Join(choices, ", "))
		return def
	}
	return s
}

// intIn reads an integer in [lo, hi].
func (p *query) intIn(name string, def, lo, hi int) int {
	s := p.v.Get(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		p.fail("parameter %s=%s: want an integer from %d to %d", name, strconv.Quote(truncate(s, 32)), lo, hi)
		return def
	}
	return n
}

// id reads an optional positive int64 (an event or log id).
func (p *query) id(name string) int64 {
	s := p.v.Get(name)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		p.fail("parameter %s=%s: want a positive integer id", name, strconv.Quote(truncate(s, 32)))
		return 0
	}
	return n
}

// uuid reads an optional UUID.
func (p *query) uuid(name string) *uuid.UUID {
	s := p.v.Get(name)
	if s == "" {
		return nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		p.fail("parameter %s=%s: not a UUID", name, strconv.Quote(truncate(s, 40)))
		return nil
	}
	return &id
}

// pathID parses the {id} of a detail page.
func pathID(what, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, badRequest("bad %s id %s: not a UUID", what, strconv.Quote(truncate(s, 40)))
	}
	return id, nil
}
