package orchestrator

import (
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// A new leader measures heartbeat age from its takeover at the earliest:
// beats the previous leader's replica took with it, or that arrived while
// no replica led, do not fail a live agent's worker.
func TestHeartbeatBasisStartsAtTakeover(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
	cases := []struct {
		name      string
		w         core.Worker
		termStart time.Time
		want      *time.Time
	}{
		{"old beat, new term", core.Worker{LastHeartbeatAt: at(0)}, t0.Add(20 * time.Second), at(20 * time.Second)},
		{"beat after takeover", core.Worker{LastHeartbeatAt: at(30 * time.Second)}, t0.Add(20 * time.Second), at(30 * time.Second)},
		{"never beat, ready before takeover", core.Worker{ReadyAt: at(0)}, t0.Add(5 * time.Second), at(5 * time.Second)},
		{"no term known", core.Worker{LastHeartbeatAt: at(0)}, time.Time{}, at(0)},
		{"nothing to measure", core.Worker{}, t0, nil},
	}
	for _, c := range cases {
		got := heartbeatBasis(&c.w, c.termStart)
		if (got == nil) != (c.want == nil) || got != nil && !got.Equal(*c.want) {
			t.Errorf("%s: basis %v, want %v", c.name, got, c.want)
		}
	}
}
