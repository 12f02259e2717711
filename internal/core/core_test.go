package core

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestErrorCodeAndMessage(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		wantCode string
		wantMsg  string
	}{
		{"nil", nil, "", ""},
		{"invalid field", Invalid("priority", "must be between %d and %d", MinPriority, MaxPriority), EINVALID, "priority: must be between -1000 and 1000"},
		{"wrapped app error", fmt.Errorf("submit: %w", Errorf(ETOOLARGE, "params too large")), ETOOLARGE, "params too large"},
		{"not found sentinel", fmt.Errorf("get task: %w", ErrNotFound), ENOTFOUND, "not found"},
		{"lease lost sentinel", fmt.Errorf("complete: %w", ErrLeaseLost), ECONFLICT, "lease lost: the task is no longer held under this lease token"},
		{"conflict sentinel", ErrConflict, ECONFLICT, "conflict"},
		{"internal detail hidden", errors.New("pq: password authentication failed for user x"), EINTERNAL, "internal error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ErrorCode(c.err); got != c.wantCode {
				t.Errorf("ErrorCode = %q, want %q", got, c.wantCode)
			}
			if got := ErrorMessage(c.err); got != c.wantMsg {
				t.Errorf("ErrorMessage = %q, want %q", got, c.wantMsg)
			}
		})
	}
}

func TestStates(t *testing.T) {
	for _, s := range []TaskState{TaskSucceeded, TaskFailed, TaskCancelled} {
		if !s.Terminal() || !s.Valid() {
			t.Errorf("%s: want terminal and valid", s)
		}
	}
	for _, s := range []TaskState{TaskQueued, TaskRunning} {
		if s.Terminal() {
			t.Errorf("%s: want not terminal", s)
		}
	}
	if TaskState("done").Valid() {
		t.Error(`"done" must not be a valid task state`)
	}
	live := map[WorkerState]bool{
		WorkerRequested: true, WorkerProvisioning: true, WorkerBooting: true, WorkerReady: true, WorkerDraining: true,
		WorkerTerminating: false, WorkerTerminated: false, WorkerFailed: false,
	}
	for s, want := range live {
		if s.Live() != want || !s.Valid() {
			t.Errorf("%s: Live() = %v, want %v (and valid)", s, s.Live(), want)
		}
	}
}

func TestFakeClock(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.FixedZone("X", 3600))
	c := NewFakeClock(start)
	if got := c.Now(); !got.Equal(start) || got.Location() != time.UTC {
		t.Fatalf("Now = %v, want %v in UTC", got, start)
	}
	if got := c.Advance(90 * time.Second); !got.Equal(start.Add(90 * time.Second)) {
		t.Fatalf("Advance = %v", got)
	}
	later := start.Add(time.Hour)
	c.Set(later)
	if !c.Now().Equal(later) {
		t.Fatalf("Set: Now = %v, want %v", c.Now(), later)
	}
}
