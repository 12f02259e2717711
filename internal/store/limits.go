package store

import "github.com/droverhq/drover/internal/core"

// Default and maximum number of rows of each listing (Limit 0 means the
// default).
const (
	DefaultTaskListLimit  = 100
	MaxTaskListLimit      = 1000
	DefaultEventListLimit = 100
	MaxEventListLimit     = 10000
	DefaultLogListLimit   = 1000
	MaxLogListLimit       = 10000
)

// ListLimit returns limit, or def when limit is 0. Outside 0..max it is an
// EINVALID error naming "limit". Both backends use it, so a listing behaves
// the same on each.
func ListLimit(limit, def, max int) (int, error) {
	switch {
	case limit < 0 || limit > max:
		return 0, core.Invalid("limit", "must be between 1 and %d (0 means %d), got %d", max, def, limit)
	case limit == 0:
		return def, nil
	}
	return limit, nil
}
