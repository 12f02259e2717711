package api

import (
	"testing"

	"github.com/droverhq/drover/internal/core"
)

func TestStatusForCode(t *testing.T) {
	for code, want := range map[string]int{
		core.EINVALID: 400, core.ENOTFOUND: 404, core.ECONFLICT: 409, core.EUNAUTHORIZED: 401,
		core.EFORBIDDEN: 403, core.ETOOLARGE: 413, core.EUNAVAILABLE: 503, core.EINTERNAL: 500, "bogus": 500,
	} {
		if got := StatusForCode(code); got != want {
			t.Errorf("StatusForCode(%q) = %d, want %d", code, got, want)
		}
	}
}
